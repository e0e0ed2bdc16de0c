"""Keras-style L2 penalties declared by a network's parameter groups, applied the same way under any optimizer.

Keras' ``kernel_regularizer=l2(λ)`` adds ``λ·Σw²`` to the loss, i.e. ``2λ·w`` to the gradient, which Adam then
rescales like the rest of the gradient. A network asks for it with an ``"l2": λ`` entry in a group of its
``optimizer_param_groups()`` (the Keras ResNets: convolution kernels only). Torch optimizers whose
``weight_decay`` is that same coupled L2 term (SGD, Adam, RMSprop, ...) get ``2λ`` added to the group's weight
decay: exact, and free. Any other optimizer (AdamW, whose decay is decoupled from the gradient, or one we do not
know) leaves its ``weight_decay`` alone and the penalty ``λ·Σw²`` is added to the training loss instead, so
``model.l2`` means the same thing whatever ``optimizer=`` is, and ``optimizer.weight_decay`` keeps its own meaning
on every parameter.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

COUPLED_WEIGHT_DECAY_OPTIMIZERS = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.RMSprop,
    torch.optim.Adagrad,
    torch.optim.Adamax,
    torch.optim.ASGD,
)

L2Terms = list[tuple[float, list[torch.Tensor]]]


@runtime_checkable
class HasOptimizerGroups(Protocol):
    """A network with per-group optimizer settings: ``optimizer_param_groups()`` gives the groups, each a dict with
    ``params`` and its settings (an ``"l2"`` entry among them)."""

    def optimizer_param_groups(self) -> list[dict[str, Any]]: ...


def has_coupled_weight_decay(optimizer: torch.optim.Optimizer, group: dict) -> bool:
    """Whether ``group["weight_decay"]`` adds ``weight_decay·w`` to the gradient (an L2 term of the loss)."""
    return isinstance(optimizer, COUPLED_WEIGHT_DECAY_OPTIMIZERS) and not group.get("decoupled_weight_decay", False)


def apply_l2_penalties(optimizer: torch.optim.Optimizer) -> L2Terms:
    """Fold each group's ``l2`` into its weight decay where the optimizer's decay is a coupled L2 term; return
    the ``(λ, parameters)`` penalties that must go into the loss instead (empty for SGD, Adam and the like)."""
    in_loss: L2Terms = []
    for group in optimizer.param_groups:
        l2 = float(group.get("l2", 0.0) or 0.0)
        if not l2:
            continue
        if has_coupled_weight_decay(optimizer, group):
            group["weight_decay"] = float(group.get("weight_decay", 0.0)) + 2.0 * l2
        else:
            in_loss.append((l2, list(group["params"])))
    return in_loss


def l2_penalty(terms: L2Terms) -> torch.Tensor:
    """``Σ λ·Σw²`` over the penalties ``apply_l2_penalties`` left to the loss."""
    return torch.stack([l2 * torch.stack([p.pow(2).sum() for p in params]).sum() for l2, params in terms]).sum()

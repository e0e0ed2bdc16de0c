"""The from-scratch numpy networks' hidden-layer rule as the backward pass of an output layer.

The classic numpy MNIST network (python-course.eu's version of Rashid, *Make Your Own Neural Network*: one sigmoid
hidden layer ``h = σ(W₁x)``, sigmoid outputs ``o = σ(W₂h)``, no biases, batch size 1) trains each sample with

    e   = t - o                                   # output_errors
    W₂ += lr·(e·o(1 - o))·hᵀ                      # output weights first
    e_h = W₂ᵀ·e                                   # hidden_errors: the raw error, through the UPDATED W₂
    W₁ += lr·(e_h·h(1 - h))·xᵀ

Its output step is plain SGD on the squared error ``½·Σ_k (t_k - o_k)²`` (whose gradient at the logits is
``-(t - o)·o(1 - o)``), but its hidden step is not that loss's gradient, nor any loss's: the error reaches the hidden
layer without the factor ``o(1 - o)`` and through the output weights as they are after their step.
``seed_linear`` is an output layer (``F.linear``) whose backward pass gives exactly those two steps to plain SGD:

* to the weight (and bias) the ordinary gradient ``gᵀh`` (``g = ∂loss/∂z``, the incoming gradient at the logits);
* to the features ``h`` the error at the sigmoid outputs, ``∂loss/∂o = g / (o(1 - o))`` with ``o = σ(z)``,
  multiplied by the weight after the SGD step this backward pass is about to cause, ``W₂ - lr·gᵀh``.

With the project's squared error (``smoothing.loss=squared_error``: ``loss = mean_n ½·Σ_k (t_k - o_k)²``, so
``∂loss/∂o = -(t - o)/N``), batch size 1 and ``torch.optim.SGD`` at learning rate ``lr`` without momentum,
dampening, Nesterov or weight decay, one optimiser step is the seeds' step above, weight for weight: the features
receive ``-W₂,newᵀ·e``, autograd multiplies it by the hidden sigmoid's ``h(1 - h)`` and by ``xᵀ``, and SGD
subtracts ``lr`` times that. ``lr`` here must be the optimiser's (``model.backprop_lr: ${optimizer.lr}``);
``lr = 0`` is the order of Rashid's book instead, whose hidden errors go through the output weights before their
update.

What remains different, all outside the seeds' setting: with a batch of N > 1 each sample's error goes through
the output weights after the batch's (mean) step, where the seeds step after every sample; a learning-rate
schedule, momentum, weight decay, gradient accumulation, gradient clipping or several devices change the actual
step but not the look-ahead ``W₂ - lr·gᵀh``; any other loss of the sigmoid outputs passes its own ``∂loss/∂o``
(binary cross entropy: ``(o - t)/(o(1 - o))``), and a loss that is not one of the sigmoid outputs (softmax cross
entropy) makes the division meaningless. Where an output saturates in the working precision (``o`` rounds to
1, ``o(1 - o)`` to 0: logits above about 17 in float32, 37 in float64) the loss's gradient ``g`` carries no error
any more and that output sends none to the hidden layer, where the seeds' float64 numpy code would still send
``t - o``. Otherwise the division recovers ``∂loss/∂o`` to a few units in the last place of the loss's precision
(the strategies compute their losses in float32: a float32 run follows the float64 numpy loop to about 1e-6 over
a few hundred steps, a float64 network with a float64 squared error to float64 rounding).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class SeedBackprop(torch.autograd.Function):
    """``F.linear(features, weight, bias)`` whose backward pass sends the hidden layer the error at the sigmoid
    outputs through the look-ahead weight ``weight - lr·∂loss/∂weight`` (module docstring)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lr: float
    ) -> torch.Tensor:
        logits = F.linear(features, weight, bias)
        ctx.save_for_backward(features, weight, logits)
        ctx.lr = lr
        ctx.has_bias = bias is not None
        return logits

    @staticmethod
    def backward(ctx: Any, grad_logits: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        features, weight, logits = ctx.saved_tensors
        needs_features, needs_weight, needs_bias, _ = ctx.needs_input_grad
        flat_grad = grad_logits.reshape(-1, grad_logits.shape[-1])
        flat_features = features.reshape(-1, features.shape[-1])
        grad_weight = flat_grad.T @ flat_features
        grad_bias = flat_grad.sum(0) if ctx.has_bias and needs_bias else None
        grad_features = None
        if needs_features:
            # The factor o(1 - o) the loss's sigmoid put into grad_logits, in float32 at least (as the strategies
            # compute their losses, under mixed precision too).
            dtype = torch.promote_types(logits.dtype, torch.float32)
            outputs = torch.sigmoid(logits.to(dtype))
            slope = (1 - outputs) * outputs
            error = torch.where(slope > 0, grad_logits.to(dtype) / torch.where(slope > 0, slope, 1), 0)  # ∂loss/∂o
            updated = weight - ctx.lr * grad_weight if needs_weight else weight
            grad_features = (error.to(updated.dtype) @ updated).to(features.dtype)
        return grad_features, grad_weight if needs_weight else None, grad_bias, None


def seed_linear(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, lr: float = 0.0
) -> torch.Tensor:
    """``F.linear(features, weight, bias)`` in the forward pass; in the backward pass the seeds' numpy rule: the
    weight and bias get their gradient, the features the error at the sigmoid outputs ``σ(logits)`` (without the
    factor ``o(1 - o)``) through ``weight - lr·∂loss/∂weight``, the output weight after a plain SGD step of ``lr``
    (module docstring: when that is the seeds' update exactly)."""
    return SeedBackprop.apply(features, weight, bias, float(lr))

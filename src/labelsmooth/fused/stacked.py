"""Many networks of one architecture trained as one network with stacked state.

The members' parameters and buffers are stacked along a new first dimension (``torch.func.stack_module_state``):
one optimizer step, one checkpoint and one Lightning step serve all members. The forward pass is
``functional_call`` of one template network, either

* ``loop``: once per member on its slices (views) of the stacked state. Each member runs the kernels its separate
  run runs, so its outputs, gradients and (elementwise) optimizer updates are bit for bit its separate run's;
  or
* ``vmap``: ``torch.func.vmap`` over the members, one batched call per layer (convolutions become grouped ones).
  Faster where one member leaves the device idle (small models on a GPU), but the batched kernels round
  differently (about 1e-7 relative per step), and Adam amplifies such differences in the weights whose gradients
  are near zero.

Members stay independent: member m's output and gradient depend only on its own slice, and in train mode
BatchNorm updates each member's running statistics in its own slice of the stacked buffers. Written here because
neither torch.func nor timm offers a module that holds stacked state for an optimizer and a checkpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from labelsmooth.errors import LabelsmoothError, first_line


class NotFusable(LabelsmoothError):
    """These networks cannot be trained as one batched network; the message says why."""


BATCHING = ("vmap", "loop")


def _key(name: str) -> str:
    return name.replace(".", "/")  # module attribute names may not contain dots


class StackedNetworks(nn.Module):
    """The networks ``networks`` (one architecture) as stacked parameters and buffers; ``forward(x)`` gives the
    (M, N, K) logits of M members for inputs of shape (M, N, ...) (each member its own batch) or, with
    ``shared=True``, (N, ...) (one batch for all), by ``batching`` (``loop`` or ``vmap``, above)."""

    def __init__(self, networks: Sequence[nn.Module], batching: str = "loop") -> None:
        super().__init__()
        if batching not in BATCHING:
            raise ValueError(f"batching={batching!r} must be one of {', '.join(BATCHING)}")
        self.batching = batching
        check_same_architecture(networks)
        self._template = [copy.deepcopy(networks[0]).to("meta")]  # in a list: not a submodule, no state
        params, buffers = stack_module_state(list(networks))
        self.parameter_names = list(params)
        self.buffer_names = list(buffers)
        self.stacked_parameters = nn.ParameterDict({_key(n): nn.Parameter(p.detach()) for n, p in params.items()})
        for name, buffer in buffers.items():
            self.register_buffer(f"stacked/{_key(name)}", buffer.clone())
        self._parameter_index = {id(p): name for name, p in networks[0].named_parameters()}

    @property
    def members(self) -> int:
        return next(iter(self.stacked_parameters.values())).shape[0]

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        params = {name: self.stacked_parameters[_key(name)] for name in self.parameter_names}
        buffers = {name: self.get_buffer(f"stacked/{_key(name)}") for name in self.buffer_names}
        return params, buffers

    def forward(self, inputs: torch.Tensor, shared: bool = False) -> torch.Tensor:
        template = self._template[0].train(self.training)

        def member(params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(template, (params, buffers), (x,))

        params, buffers = self._state()
        if self.batching == "vmap":
            return vmap(member, in_dims=(0, 0, None if shared else 0), randomness="error")(params, buffers, inputs)
        # Each member's own kernels, on its slices (views) of the stacked state. The parameters are unbound once:
        # the backward of ``unbind`` stacks the members' gradients, where indexing each member would add M
        # zero-padded copies of every stacked gradient.
        unbound = {n: p.unbind(0) for n, p in params.items()}
        outputs = []
        for m in range(self.members):
            slices = ({n: p[m] for n, p in unbound.items()}, {n: b[m] for n, b in buffers.items()})
            outputs.append(member(*slices, inputs if shared else inputs[m]))
        return torch.stack(outputs)

    def stacked_parameter(self, parameter: nn.Parameter) -> nn.Parameter:
        """The stacked parameter that holds ``parameter`` of the first member's network (optimizer groups)."""
        name = self._parameter_index.get(id(parameter))
        if name is None:
            raise NotFusable("the optimizer takes a parameter outside the network (a learnable strategy?)")
        return self.stacked_parameters[_key(name)]

    def member_state(self, member: int) -> dict[str, torch.Tensor]:
        """Member ``member``'s parameters and buffers, as its own network's ``state_dict`` names them."""
        params, buffers = self._state()
        return {name: tensor[member].detach() for name, tensor in {**params, **buffers}.items()}

    def copy_to(self, member: int, network: nn.Module) -> None:
        """Load member ``member``'s current weights and statistics into ``network`` (of the same architecture)."""
        network.load_state_dict(self.member_state(member), strict=True)


def check_same_architecture(networks: Sequence[nn.Module]) -> None:
    if not networks:
        raise NotFusable("no networks to fuse")
    first = {k: (tuple(v.shape), v.dtype) for k, v in networks[0].state_dict().items()}
    for network in networks[1:]:
        if (
            type(network) is not type(networks[0])
            or {k: (tuple(v.shape), v.dtype) for k, v in network.state_dict().items()} != first
        ):
            raise NotFusable(f"the networks differ ({type(networks[0]).__name__} and {type(network).__name__})")


def check_fusable(
    networks: Sequence[nn.Module], sample: torch.Tensor, batching: str = "loop", tolerance: float = 1e-4
) -> None:
    """Raise ``NotFusable`` (saying why) unless the networks train as one: one architecture, a forward pass that
    draws no random numbers in train mode (its draws could not be the ones of the member trained alone) and that
    ``batching`` can batch, and members' outputs equal to their own networks' (eval mode, to ``tolerance``
    relative). Checked on copies of the first two: the networks' state is untouched."""
    copies = [copy.deepcopy(network) for network in networks[:2]]
    name = type(networks[0]).__name__
    try:
        stacked = StackedNetworks(copies, batching).eval()
        with torch.no_grad():
            fused = stacked(sample, shared=True)
            alone = torch.stack([network.eval()(sample) for network in copies])
        before = _generator_states()
        stacked.train()(sample.unsqueeze(0).expand(len(copies), *sample.shape))
        if not all(torch.equal(a, b) for a, b in zip(before, _generator_states(), strict=True)):
            raise NotFusable(f"{name} draws random numbers in its forward pass (dropout, stochastic depth)")
    except NotFusable:
        raise
    except Exception as error:
        if "random" in str(error).lower():
            raise NotFusable(f"{name} draws random numbers in its forward pass (dropout, stochastic depth)") from error
        raise NotFusable(f"{name} cannot be batched ({batching}): {first_line(error)}") from error
    scale = alone.abs().max().clamp_min(1e-12)
    if float((fused - alone).abs().max() / scale) > tolerance:
        raise NotFusable(f"{name}: the batched outputs differ from the networks' own")


def _generator_states() -> list[torch.Tensor]:
    return [torch.get_rng_state(), *(torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])]

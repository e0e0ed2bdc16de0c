"""A fully connected classifier on flattened images."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from labelsmooth.errors import ConfigurationError
from labelsmooth.models.seed_backprop import seed_linear

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}
INITS = ("default", "seed_truncated_normal")
BACKPROPS = ("gradient", "seed_numpy")


def seed_truncated_normal_(layer: nn.Linear) -> None:
    """The seeds' initialisation: each weight from a standard normal truncated to ``[-1/√n_in, 1/√n_in]``
    (``n_in``: the layer's inputs), python-course.eu's ``truncnorm(-r, r, loc=0, scale=1)`` with ``r = 1/√n_in``,
    nearly uniform on that interval; biases (the seeds' network has none) zero."""
    radius = layer.in_features**-0.5
    nn.init.trunc_normal_(layer.weight, mean=0.0, std=1.0, a=-radius, b=radius)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class MLP(nn.Module):
    """``C·H·W → hidden[0] → … → num_classes`` with one activation after each hidden layer.

    ``MLP(hidden_sizes=[100], activation="sigmoid")`` on 28×28 MNIST is the 784-100-10 sigmoid network
    built from scratch in the seeds (Rashid, *Make Your Own Neural Network*); that network has no bias terms
    (``bias=False``) and its own initialisation (``init="seed_truncated_normal"``, ``seed_truncated_normal_``), the
    ``mlp_seed`` preset. ``init="default"`` keeps PyTorch's ``nn.Linear`` initialisation.

    ``backprop="gradient"`` (default): autograd's gradient of the loss. ``backprop="seed_numpy"``: the seeds' numpy
    training rule, which is not a gradient: the output layer passes back the error at its sigmoid outputs (without
    their derivative ``o(1 - o)``) through the output weights after their SGD step of ``backprop_lr``
    (``labelsmooth.models.seed_backprop``); with the squared error of the sigmoid outputs
    (``smoothing.loss=squared_error``), batch size 1 and plain SGD at ``lr = backprop_lr`` each step is the seeds'
    step exactly. The forward pass is the same either way.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int | Sequence[int],
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        dropout: float = 0.0,
        bias: bool = True,
        init: str = "default",
        backprop: str = "gradient",
        backprop_lr: float | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigurationError(f"model.activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
        if init not in INITS:
            raise ConfigurationError(f"model.init={init!r} is not one of {list(INITS)}")
        if backprop not in BACKPROPS:
            raise ConfigurationError(f"model.backprop={backprop!r} is not one of {list(BACKPROPS)}")
        if any(isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in hidden_sizes):
            raise ConfigurationError(
                f"model.hidden_sizes={list(hidden_sizes)!r} must be a list of integers >= 1 ([] for no hidden layer)"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigurationError(f"model.dropout={dropout!r} must lie in [0, 1)")
        if backprop == "seed_numpy" and (backprop_lr is None or not 0 <= backprop_lr < math.inf):
            raise ConfigurationError(
                f"model.backprop=seed_numpy needs model.backprop_lr >= 0 (the optimizer's learning rate, "
                f"model.backprop_lr=${{optimizer.lr}}), got {backprop_lr!r}"
            )
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        layers: list[nn.Module] = [nn.Flatten()]
        width_in = in_channels * height * width
        for width_out in hidden_sizes:
            layers += [nn.Linear(width_in, width_out, bias=bias), ACTIVATIONS[activation]()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width_in = width_out
        layers.append(nn.Linear(width_in, num_classes, bias=bias))
        self.layers = nn.Sequential(*layers)
        if init == "seed_truncated_normal":
            for layer in self.layers:
                if isinstance(layer, nn.Linear):
                    seed_truncated_normal_(layer)
        self.input_shape = (in_channels, height, width)
        self.backprop = backprop
        self.backprop_lr = float(backprop_lr) if backprop_lr is not None else None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features (N, D): the output of the last hidden layer (the flattened input without one)."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"MLP built for inputs of shape {self.input_shape}, got {tuple(x.shape[1:])}")
        return self.layers[:-1](x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The logits of penultimate ``features``; the features themselves with ``pre_logits`` (timm's API)."""
        if pre_logits:
            return features
        head = self.layers[-1]
        if self.backprop == "seed_numpy":
            return seed_linear(features, head.weight, head.bias, self.backprop_lr)
        return head(features)

    def get_classifier(self) -> nn.Linear:
        """The last layer, whose weight rows are the class templates (timm's API)."""
        return self.layers[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

"""A fully connected classifier on flattened images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}


class MLP(nn.Module):
    """``C·H·W → hidden[0] → … → num_classes`` with one activation after each hidden layer.

    ``MLP(hidden_sizes=[100], activation="sigmoid")`` on 28×28 MNIST is the 784-100-10 sigmoid network
    built from scratch in the seeds (Rashid, *Make Your Own Neural Network*); that network has no bias terms
    (``bias=False``, the ``mlp_seed`` preset).
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
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
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
        self.input_shape = (in_channels, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"MLP built for inputs of shape {self.input_shape}, got {tuple(x.shape[1:])}")
        return self.layers(x)

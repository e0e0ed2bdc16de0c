"""Networks: Keras parameter counts and the input sizes of the data sets."""

from __future__ import annotations

import pytest
import torch

from labelsmooth.models import MLP, ResNetV1
from labelsmooth.models.resnet import ResNetV2


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_keras_example() -> None:
    assert 0.26e6 < count(ResNetV1(10, 3, 32, depth=20)) < 0.28e6
    assert 2.4e6 < count(ResNetV2(10, 3, 32, depth=83)) < 2.6e6


@pytest.mark.parametrize("size,channels", [(8, 1), (28, 1), (32, 3), (72, 3)])
@pytest.mark.parametrize("cls,depth", [(ResNetV1, 8), (ResNetV2, 11)])
def test_resnets_accept_every_input_size(cls, depth: int, size: int, channels: int) -> None:
    model = cls(7, channels, size, depth=depth).eval()
    assert model(torch.randn(2, channels, size, size)).shape == (2, 7)


@pytest.mark.parametrize("depth", [7, 21])
def test_invalid_depth_names_the_valid_ones(depth: int) -> None:
    with pytest.raises(ValueError, match=r"6n\+2 \(8, 14, 20"):
        ResNetV1(10, depth=depth)


def test_l2_applies_to_convolution_kernels_only() -> None:
    model = ResNetV1(10, 3, 32, depth=8, l2=1e-4)
    decayed, plain = model.optimizer_param_groups()
    assert decayed["weight_decay"] == pytest.approx(2e-4) and plain["weight_decay"] == 0.0
    assert all(p.dim() == 4 for p in decayed["params"])
    assert sum(p.numel() for g in (decayed, plain) for p in g["params"]) == count(model)


def test_mlp_shapes() -> None:
    mlp = MLP(10, 1, 28, hidden_sizes=[100], activation="sigmoid")
    assert mlp(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert count(mlp) == 784 * 100 + 100 + 100 * 10 + 10
    with pytest.raises(ValueError, match="inputs of shape"):
        mlp(torch.rand(3, 1, 8, 8))

"""ResNet v1 and v2 exactly as the Keras ``cifar10_resnet`` example that Mezzini (2018) trained.

Written by hand because neither torchvision nor timm has these CIFAR-style networks with Keras' details,
which the paper's numbers depend on:

* v1 (He et al. 2016a): depth ``6n + 2``, stacks of 16/32/64 filters, basic blocks conv-BN-ReLU-conv-BN,
  a 1×1 convolution (no BN) as the projection shortcut where the stack downsamples.
* v2 (He et al. 2016b, pre-activation bottleneck): depth ``9n + 2``, bottleneck inputs 16/64/128 and
  outputs 64/128/256, BN-ReLU-conv ordering, a final BN-ReLU before pooling. Depth 83 is n = 9.
* Keras defaults: convolutions with bias, ``'same'`` padding (TensorFlow pads the extra row/column at
  the bottom/right for strided convolutions), BatchNorm epsilon 1e-3 (its momentum: below), ``he_normal``
  initialisation (a truncated normal with std ``sqrt(2/fan_in)/0.8796``) for convolutions and the classifier,
  zero biases, and an L2 penalty ``l2·Σw²`` (1e-4) on convolution
  kernels only, declared in ``optimizer_param_groups()`` (see ``labelsmooth.models.l2_penalty``: weight decay
  ``2·l2`` on those tensors under SGD / Adam, a loss term under AdamW).

BatchNorm momentum, ``bn_momentum``, is in PyTorch's convention, ``running ← (1 - m)·running + m·batch``; Keras'
``momentum=μ`` means ``running ← μ·running + (1 - μ)·batch``, so ``m = 1 - μ``. The Keras example's 0.99 is
``bn_momentum=0.01`` (the ``mezzini2019*`` recipes keep it); the default is PyTorch's 0.1 (Keras 0.9). With 0.01 the
running statistics that evaluation uses average over the last ~1/m = 100 steps and so trail the weights: after a
short run they describe an older network (precise BN, ``labelsmooth.callbacks.precise_bn``, recomputes them).

Departure from the example: its head is ``AveragePooling2D(pool_size=8)``, global only for 32-pixel
inputs. Here the head pools globally, so 8, 28, 32 and 72 pixel inputs all work; for 32×32 inputs the two
are the same operation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from labelsmooth.errors import ConfigurationError, non_negative_number, whole_number

TORCH_BN_MOMENTUM = 0.1  # PyTorch's default, in PyTorch's convention (Keras' momentum=0.9)
KERAS_BN_EPS = 1e-3
TRUNCATED_NORMAL_STD_CORRECTION = 0.87962566103423978  # Keras VarianceScaling(distribution="truncated_normal")


def keras_he_normal_(weight: torch.Tensor) -> torch.Tensor:
    fan_in = weight[0].numel()
    std = math.sqrt(2.0 / fan_in) / TRUNCATED_NORMAL_STD_CORRECTION
    return nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's ``padding='same'``: output size ``ceil(input / stride)``, any odd
    padding total put at the bottom/right."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        sizes = zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True)
        for size, kernel, stride in sizes:
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return super().forward(x)


def keras_batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with Keras' epsilon; the network sets the momentum of all of them (``bn_momentum``)."""
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPS)


def check_bn_momentum(bn_momentum: float) -> float:
    """``bn_momentum`` as a float in (0, 1], or a ``ConfigurationError`` naming the parameter and the range."""
    if isinstance(bn_momentum, bool) or not isinstance(bn_momentum, (int, float)) or not 0.0 < bn_momentum <= 1.0:
        raise ConfigurationError(
            f"model.bn_momentum={bn_momentum!r} must lie in (0, 1], in PyTorch's convention (running <- (1 - m)"
            "·running + m·batch; Keras' momentum μ is m = 1 - μ, e.g. Keras 0.99 is 0.01)"
        )
    return float(bn_momentum)


class ConvBNAct(nn.Sequential):
    """Keras' ``resnet_layer``: conv → BN → ReLU when ``conv_first``, else BN → ReLU → conv; BN and the
    activation each optional."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        activation: bool = True,
        batch_norm: bool = True,
        conv_first: bool = True,
    ) -> None:
        conv = Conv2dSame(in_channels, out_channels, kernel_size, stride)
        norm_channels = out_channels if conv_first else in_channels
        post = ([keras_batch_norm(norm_channels)] if batch_norm else []) + ([nn.ReLU()] if activation else [])
        super().__init__(*([conv, *post] if conv_first else [*post, conv]))


class BasicBlockV1(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            ConvBNAct(in_channels, out_channels, stride=stride),
            ConvBNAct(out_channels, out_channels, activation=False),
        )
        self.shortcut = (
            ConvBNAct(in_channels, out_channels, 1, stride, activation=False, batch_norm=False)
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.shortcut(x) + self.residual(x))


class BottleneckBlockV2(nn.Module):
    def __init__(self, in_channels: int, bottleneck: int, out_channels: int, stride: int, preactivate: bool) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            ConvBNAct(
                in_channels, bottleneck, 1, stride, activation=preactivate, batch_norm=preactivate, conv_first=False
            ),
            ConvBNAct(bottleneck, bottleneck, 3, conv_first=False),
            ConvBNAct(bottleneck, out_channels, 1, conv_first=False),
        )
        self.shortcut = (
            ConvBNAct(in_channels, out_channels, 1, stride, activation=False, batch_norm=False)
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.residual(x)


class _KerasResNet(nn.Module):
    def __init__(self, l2: float, bn_momentum: float, base_width: int) -> None:
        super().__init__()
        self.l2 = non_negative_number("model.l2", l2, "the Keras kernel regulariser's factor; 0: none")
        self.bn_momentum = check_bn_momentum(bn_momentum)
        whole_number("model.base_width", base_width, 1, "the first stage's channels")

    def _init_weights(self) -> None:
        """Keras' initialisation of convolutions and the classifier; every BatchNorm gets ``bn_momentum``."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                keras_he_normal_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.momentum = self.bn_momentum

    def optimizer_param_groups(self) -> list[dict]:
        """Keras' ``kernel_regularizer=l2(l2)`` on convolution kernels only: the kernels' group declares ``l2``,
        which ``labelsmooth.models.l2_penalty.apply_l2_penalties`` turns into weight decay ``2·l2`` (SGD, Adam) or
        a loss term (AdamW). Neither group sets ``weight_decay``: ``optimizer.weight_decay`` applies to both."""
        kernels = [m.weight for m in self.modules() if isinstance(m, nn.Conv2d)]
        kernel_ids = {id(p) for p in kernels}
        others = [p for p in self.parameters() if id(p) not in kernel_ids]
        return [{"params": kernels, "l2": self.l2}, {"params": others}]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features (N, D): the last stage's maps pooled globally."""
        return torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The logits of penultimate ``features``; the features themselves with ``pre_logits`` (timm's API)."""
        return features if pre_logits else self.classifier(features)

    def get_classifier(self) -> nn.Linear:
        """The last layer, whose weight rows are the class templates (timm's API)."""
        return self.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _blocks_per_stage(depth: int, per_block: int, name: str) -> int:
    if depth < per_block + 2 or (depth - 2) % per_block:
        valid = ", ".join(str(per_block * n + 2) for n in range(1, 6))
        raise ConfigurationError(
            f"model.depth={depth} is not valid for {name}: it must be {per_block}n+2 ({valid}, ...)"
        )
    return (depth - 2) // per_block


class ResNetV1(_KerasResNet):
    """Keras ResNet v1, depth ``6n + 2`` (20, 32, 44, 56, 110, ...); depth 20 with 10 classes has 0.27 M
    parameters."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: int | Sequence[int] | None = None,
        depth: int = 20,
        base_width: int = 16,
        l2: float = 1e-4,
        bn_momentum: float = TORCH_BN_MOMENTUM,
    ) -> None:
        super().__init__(l2, bn_momentum, base_width)
        blocks = _blocks_per_stage(depth, 6, "ResNet v1")
        layers: list[nn.Module] = [ConvBNAct(in_channels, base_width)]
        channels = base_width
        for stage in range(3):
            width = base_width * 2**stage
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlockV1(channels, width, stride))
                channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        self._init_weights()


class ResNetV2(_KerasResNet):
    """Keras ResNet v2 (pre-activation bottleneck), depth ``9n + 2`` (29, 56, 83, 164, ...); depth 83 with
    10 classes has about 2.5 M parameters."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: int | Sequence[int] | None = None,
        depth: int = 83,
        base_width: int = 16,
        l2: float = 1e-4,
        bn_momentum: float = TORCH_BN_MOMENTUM,
    ) -> None:
        super().__init__(l2, bn_momentum, base_width)
        blocks = _blocks_per_stage(depth, 9, "ResNet v2")
        layers: list[nn.Module] = [ConvBNAct(in_channels, base_width)]
        channels_in = base_width
        for stage in range(3):
            channels_out = channels_in * (4 if stage == 0 else 2)
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                in_channels_block = channels_in if block == 0 else channels_out
                # The stem already ends in BN-ReLU, so the very first block does not pre-activate again.
                preactivate = not (stage == 0 and block == 0)
                layers.append(BottleneckBlockV2(in_channels_block, channels_in, channels_out, stride, preactivate))
            channels_in = channels_out
        layers += [keras_batch_norm(channels_in), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels_in, num_classes)
        self._init_weights()

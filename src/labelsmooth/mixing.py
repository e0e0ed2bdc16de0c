"""MixUp / CutMix of a training batch, with unsmoothed mixed targets.

``BatchMixing(num_classes, mixup_alpha, cutmix_alpha)(inputs, target)`` returns the mixed inputs and the (N, K)
mixed target ``λ·onehot(y) + (1 - λ)·onehot(y')`` (``y'`` the labels of the batch rolled by one, ``λ`` from
``Beta(α, α)``; for CutMix ``λ`` is the area kept). The mixing itself is torchvision's
(``torchvision.transforms.v2.MixUp`` / ``CutMix``, Zhang et al. 2018 / Yun et al. 2019), which never smooths the
target. Smoothing is the strategy's job, applied once to the mixed target (``strategy.mixed_target_loss``); this
module applies none, unlike timm's ``Mixup`` whose ``label_smoothing=0.1`` default would smooth a second time.
It depends on torch and torchvision only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from labelsmooth.errors import ConfigurationError
from labelsmooth.smoothing import TakesMixedTargets


def _check_alpha(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
        raise ConfigurationError(f"augment.{name}={value!r} is out of range: it must lie in [0, inf) (0 turns it off).")
    return float(value)


class BatchMixing(nn.Module):
    """MixUp and/or CutMix on whole batches of images (N, C, H, W) with class indices (N,).

    ``mixup_alpha`` / ``cutmix_alpha``: the Beta(α, α) parameters (0 turns that mix off; with both on, each batch
    uses CutMix with probability ``switch_prob``, else MixUp, as timm does). ``prob``: probability of mixing a
    batch at all; an unmixed batch comes back with one-hot targets, so the loss is the same either way.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.mixup_alpha = _check_alpha("mixup_alpha", mixup_alpha)
        self.cutmix_alpha = _check_alpha("cutmix_alpha", cutmix_alpha)
        for name, value in (("prob", prob), ("switch_prob", switch_prob)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigurationError(f"augment.{name}={value!r} is out of range: it must lie in [0, 1].")
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ConfigurationError(
                "augment: mixup_alpha and cutmix_alpha are both 0; use augment=none for no mixing."
            )
        self.prob = float(prob)
        self.switch_prob = float(switch_prob)
        mixes = []
        if self.cutmix_alpha > 0:
            mixes.append(v2.CutMix(alpha=self.cutmix_alpha, num_classes=self.num_classes))
        if self.mixup_alpha > 0:
            mixes.append(v2.MixUp(alpha=self.mixup_alpha, num_classes=self.num_classes))
        probabilities = [self.switch_prob, 1.0 - self.switch_prob] if len(mixes) == 2 else [1.0]
        self.mix = v2.RandomChoice(mixes, p=probabilities) if len(mixes) == 2 else mixes[0]

    def forward(self, inputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if inputs.ndim != 4:
            raise ValueError(f"batch mixing expects images of shape (N, C, H, W), got {tuple(inputs.shape)}")
        if self.prob < 1.0 and float(torch.rand(())) >= self.prob:
            return inputs, F.one_hot(target.long(), self.num_classes).float()
        mixed_inputs, mixed_target = self.mix(inputs, target.long())
        return mixed_inputs, mixed_target.float()

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, "
            f"prob={self.prob}, switch_prob={self.switch_prob}"
        )


def check_mixable(augment: type, criterion: type) -> None:
    """Refuse a batch mixing (MixUp, CutMix) with a strategy that cannot smooth a mixed target."""
    if not issubclass(criterion, TakesMixedTargets):
        raise ConfigurationError(
            f"The batch augment {augment.__name__} mixes targets, but the smoothing strategy {criterion.__name__} "
            "has no target distribution to smooth a mixed target with (it has no mixed_target_loss). Use "
            "augment=none, or a strategy with a target (docs/strategies.md)."
        )

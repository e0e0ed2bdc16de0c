"""The paper's preprocessing, applied to whole uint8 batches on the training device.

Written by hand because torchvision's transforms work image by image (or draw one shift for the whole
batch), while the Keras ``ImageDataGenerator`` of Mezzini (2018) draws an independent sub-pixel shift per
image. Order as in the Keras ``cifar10_resnet`` example: scale to ``input_range`` → subtract the mean of the
training split → (training only) random shift with ``fill_mode='nearest'`` → random horizontal flip.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy
import torch
import torch.nn.functional as F

from labelsmooth.errors import ConfigurationError

NORMALIZATIONS = ("none", "pixel_mean", "standardize")


def scale_to_range(images: torch.Tensor, input_range: Sequence[float]) -> torch.Tensor:
    """uint8 pixels ``v`` in 0..255 → ``lo + (hi - lo)·v/255`` (``[0.01, 1]`` is the seeds' scaling)."""
    low, high = float(input_range[0]), float(input_range[1])
    return images.float().mul_((high - low) / 255.0).add_(low)


def random_shift(images: torch.Tensor, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image by ``(dx, dy) ~ U(-fraction, fraction)·(W, H)`` pixels, sub-pixel (bilinear), the
    uncovered border filled with the nearest edge pixel: Keras' ``width_shift_range=height_shift_range=
    fraction`` with ``fill_mode='nearest'``, one independent draw per image."""
    if fraction <= 0:
        return images
    batch = images.shape[0]
    shifts = (torch.rand(batch, 2, generator=generator, device="cpu") * 2 - 1) * fraction
    # affine_grid works in [-1, 1] coordinates: a shift of fraction·W pixels is 2·fraction there.
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, :, 2] = -2.0 * shifts
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_horizontal_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


class BatchPreprocessor:
    """uint8 batch ``(N, C, H, W)`` → float batch ready for the network.

    ``normalize``: ``none``; ``pixel_mean`` subtracts the per-pixel mean image of the training split (Keras'
    ``subtract_pixel_mean``, Mezzini 2018); ``standardize`` subtracts the scalar mean and divides by the scalar
    standard deviation of the training split. ``shift`` (fraction of width/height) and ``hflip`` apply to
    training batches only.

    An ``input_range`` other than ``[0, 1]`` needs ``normalize="none"``: standardisation cancels any affine scaling
    exactly, and ``pixel_mean`` cancels its offset, so the pair would silently do nothing (or less than asked) and
    is refused with a ``ValueError``.
    """

    def __init__(
        self,
        input_range: Sequence[float] = (0.0, 1.0),
        normalize: str = "none",
        shift: float = 0.0,
        hflip: bool = False,
    ) -> None:
        if normalize not in NORMALIZATIONS:
            raise ConfigurationError(f"dataset.normalize={normalize!r} is not one of {NORMALIZATIONS}")
        if (
            len(input_range) != 2
            or not float(input_range[0]) < float(input_range[1])
            or not all(math.isfinite(float(bound)) for bound in input_range)
        ):
            raise ConfigurationError(
                f"dataset.input_range={list(input_range)} must be [low, high], finite, with low < high"
            )
        if normalize != "none" and (float(input_range[0]), float(input_range[1])) != (0.0, 1.0):
            why = (
                "standardisation cancels any affine input scaling exactly"
                if normalize == "standardize"
                else "subtracting the pixel mean cancels the range's offset"
            )
            raise ConfigurationError(
                f"dataset.input_range={[float(v) for v in input_range]} does not combine with "
                f"dataset.normalize={normalize}: {why}, so the range would silently do nothing (or less than asked). "
                "Add dataset.normalize=none (the seeds' scaling: dataset.input_range=[0.01,1] "
                "dataset.normalize=none), or keep dataset.input_range=[0,1]."
            )
        if not 0.0 <= shift < 1.0:
            raise ConfigurationError(f"dataset.shift={shift} must lie in [0, 1)")
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.normalize = normalize
        self.shift = float(shift)
        self.hflip = bool(hflip)
        self.mean: torch.Tensor | None = None  # (C, H, W) pixel mean or a scalar, in input_range units
        self.std: torch.Tensor | None = None

    def record(self) -> dict:
        """The preprocessing as plain values and tensors (a run specification's ``preprocessing``)."""
        return {
            "input_range": list(self.input_range),
            "normalize": self.normalize,
            "shift": self.shift,
            "hflip": self.hflip,
            "mean": None if self.mean is None else self.mean.detach().cpu(),
            "std": None if self.std is None else self.std.detach().cpu(),
        }

    @classmethod
    def from_record(cls, record: dict) -> BatchPreprocessor:
        """The preprocessor ``record()`` describes, statistics included."""
        preprocessor = cls(record["input_range"], record["normalize"], record["shift"], record["hflip"])
        preprocessor.mean, preprocessor.std = record.get("mean"), record.get("std")
        return preprocessor

    @property
    def needs_statistics(self) -> bool:
        return self.normalize != "none"

    def set_statistics(self, pixel_sum: torch.Tensor, pixel_sq_sum: torch.Tensor, count: int) -> None:
        """Fix the normalisation from the training split's per-pixel sums of uint8 values (float64)."""
        low, high = self.input_range
        scale = (high - low) / 255.0
        pixel_mean = pixel_sum / count
        if self.normalize == "pixel_mean":
            self.mean = (low + scale * pixel_mean).float()
        elif self.normalize == "standardize":
            values = count * pixel_sum.numel()
            mean = pixel_sum.sum() / values
            variance = pixel_sq_sum.sum() / values - mean**2
            self.mean = (low + scale * mean).float()
            self.std = (scale * variance.clamp_min(1e-12).sqrt()).float()

    def __call__(self, images: torch.Tensor, train: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.needs_statistics and self.mean is None:
            raise RuntimeError("BatchPreprocessor: call set_statistics() with the training split first")
        x = scale_to_range(images, self.input_range)
        if self.mean is not None:
            self.mean = self.mean.to(x.device)  # moved once, then reused on the training device
            x = x - self.mean
        if self.std is not None:
            self.std = self.std.to(x.device)
            x = x / self.std
        if train:
            x = random_shift(x, self.shift, generator)
            if self.hflip:
                x = random_horizontal_flip(x, generator)
        return x


def as_image_batch(images: Any, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """``images`` as an ``(N, C, H, W)`` tensor of the data's ``image_shape``: from ``(N, C, H, W)``, channels-last
    ``(N, H, W, C)``, ``(N, H, W)`` when ``C = 1``, or a single image in any of these layouts; its dtype kept."""
    batch = images if isinstance(images, torch.Tensor) else torch.as_tensor(numpy.asarray(images))
    channels, height, width = image_shape
    shape = tuple(batch.shape)
    if batch.dim() == 3 and channels == 1 and shape[1:] == (height, width):
        batch = batch.unsqueeze(1)  # (N, H, W)
    elif shape in {(channels, height, width), (height, width, channels)}:
        batch = batch.unsqueeze(0)
    elif channels == 1 and shape == (height, width):
        batch = batch[None, None]
    if batch.dim() == 4 and tuple(batch.shape[1:]) == (height, width, channels) != image_shape:
        batch = batch.permute(0, 3, 1, 2)
    if batch.dim() != 4 or tuple(batch.shape[1:]) != image_shape:
        raise ValueError(
            f"images of shape {tuple(batch.shape)} do not fit the model's inputs {image_shape} (channels, height, "
            "width): give (N, C, H, W), (N, H, W, C), (N, H, W) for one channel, or one image"
        )
    return batch.contiguous()


def process_epoch_seed(rank: int, epoch: int) -> int:
    """The generator seed of a DDP process's training epoch, from the run's seed (``PL_GLOBAL_SEED``, which
    ``seed_everything`` sets), the process and the epoch (``numpy.random.SeedSequence``). The processes share the
    run's seed, so without it every process shifted, flipped, mixed and dropped out image i of its batch alike; set
    at the epoch's first training batch (after the data iterator has drawn its own seed), a resumed run draws the
    same again."""
    import numpy as np

    key = [int(os.environ.get("PL_GLOBAL_SEED", 0)), rank, epoch]
    return int(np.random.SeedSequence(key).generate_state(1)[0])

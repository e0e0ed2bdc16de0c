"""A SYNTHETIC, CIFAR-sized data set, for benchmarks only (never for results about label smoothing).

It exists so that the benchmarks can time CIFAR-shaped training (32x32x3, 10 classes, 10,000 training
images) without a download. The images are not real: each class has a fixed smooth random pattern and an
image is ``0.6 · pattern[y] + N(0, 1)`` noise, which a network can learn, so the accuracy check between
the pipeline and the plain loop means something. As an ``ImageDataModule`` it is read, batched, preprocessed
(shifts, flips, normalisation) and fused as CIFAR-10 is; its config: ``bench/conf/dataset/synthetic_cifar.yaml``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from labelsmooth.data import ImageDataModule, InMemoryImages


def synthetic_images(count: int, num_classes: int, image_shape: tuple[int, int, int], seed: int):
    """``count`` images of class-dependent smooth patterns plus Gaussian noise, and their balanced labels."""
    generator = torch.Generator().manual_seed(seed)
    channels, height, width = image_shape
    coarse = torch.randn(num_classes, channels, 4, 4, generator=torch.Generator().manual_seed(1234))
    patterns = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    targets = torch.arange(count) % num_classes
    targets = targets[torch.randperm(count, generator=generator)]
    images = 0.6 * patterns[targets] + torch.randn(count, channels, height, width, generator=generator)
    return images, targets


class SyntheticImageDataModule(ImageDataModule):
    """Synthetic 32x32x3, 10-class images (benchmarks only): ``train_size`` / ``val_size`` / ``test_size`` images
    in the three splits, stored as uint8 (the values in [-4, 4] mapped linearly onto 0..255, clipped)."""

    name = "synthetic CIFAR-sized images"
    num_classes = 10
    SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}

    def __init__(
        self,
        train_size: int = 10_000,
        val_size: int = 1_000,
        test_size: int = 1_000,
        batch_size: int = 128,
        eval_batch_size: int | None = 512,
        num_workers: int = 0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            None, 32, 3, batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
            val_size=val_size, test_size=test_size, in_memory=True, download=False, **kwargs,
        )  # fmt: skip
        self.sizes = {"train": int(train_size), "val": int(val_size), "test": int(test_size)}
        self.seed = int(seed)

    def prepare_data(self) -> None:
        """Nothing to download or check: the images are generated in ``setup``."""

    def open_split(self, split: str, transform: Any, download: bool) -> InMemoryImages:
        seed = self.seed + self.SPLIT_SEEDS[split]
        images, targets = synthetic_images(self.sizes[split], self.num_classes, self.image_shape, seed)
        pixels = ((images / 8 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return InMemoryImages(pixels, targets)

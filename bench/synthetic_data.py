"""A SYNTHETIC, CIFAR-sized data module, for benchmarks only (never for results about label smoothing).

It exists so that the benchmarks can time CIFAR-shaped training (32x32x3, 10 classes, 10,000 training
images) without a download. The images are not real: each class has a fixed smooth random pattern and an
image is ``0.6 · pattern[y] + N(0, 1)`` noise, which a network can learn, so the accuracy check between
the pipeline and the plain loop means something.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from labelsmooth.data.base import ClassificationDataModule


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


class SyntheticImageDataModule(ClassificationDataModule):
    """Synthetic 32x32x3, 10-class images (benchmarks only): ``train_size`` / ``val_size`` / ``test_size``."""

    num_classes = 10
    image_shape = (3, 32, 32)

    def __init__(
        self,
        train_size: int = 10_000,
        val_size: int = 1_000,
        test_size: int = 1_000,
        batch_size: int = 128,
        eval_batch_size: int | None = 512,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers)
        self.sizes = (int(train_size), int(val_size), int(test_size))
        self.seed = int(seed)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits = []
        for offset, size in enumerate(self.sizes):
            splits.append(synthetic_images(size, self.num_classes, self.image_shape, self.seed + offset))
        (train_x, train_y), (val_x, val_y), (test_x, test_y) = splits
        self.train_targets = train_y
        self.train_set = TensorDataset(train_x, train_y)
        self.val_set = TensorDataset(val_x, val_y)
        self.test_set = TensorDataset(test_x, test_y)

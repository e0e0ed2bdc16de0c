"""What every data module offers the training code: the data set's shape, classes and class prior."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from labelsmooth.errors import ConfigurationError, whole_number


def image_channels(channels: object) -> int:
    """``channels`` when an image has that many (1: grey, 3: RGB), else a ``ConfigurationError`` naming the key."""
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ConfigurationError(f"dataset.channels={channels} must be 1 or 3")
    return 1 if channels == 1 else 3


class ClassificationDataModule(pl.LightningDataModule):
    """A LightningDataModule over train / val / test image classification splits.

    Subclasses set ``num_classes`` and ``image_shape`` and, in ``setup``, the three datasets
    (``self.train_set``, ``self.val_set``, ``self.test_set``) and ``self.train_targets`` (the training
    labels, for the class prior). The validation split is for model selection; the test split is only
    evaluated at the end (``dataset.val_size=0``: the test split validates too, Mezzini's protocol).
    """

    num_classes: int
    image_shape: tuple[int, int, int]
    class_names: list[str] | None = None  # in class-index order, where the data set names its classes

    @classmethod
    def declared_image_shape(cls, config: Mapping[str, Any]) -> tuple[int, int, int] | None:
        """(channels, height, width) of the images that ``config`` (this data module's) gives, known before any
        data is read: its ``channels`` and ``image_size``; None where the files will tell."""
        channels, size = config.get("channels"), config.get("image_size")
        if isinstance(channels, int) and isinstance(size, int) and not isinstance(channels, bool):
            size = whole_number("dataset.image_size", size, 1, "pixels")
            return image_channels(channels), size, size
        return None

    def __init__(self, batch_size: int = 128, eval_batch_size: int | None = None, num_workers: int = 0) -> None:
        super().__init__()
        self.batch_size = whole_number("dataset.batch_size", batch_size, minimum=1)
        self.eval_batch_size = whole_number(
            "dataset.eval_batch_size", batch_size if eval_batch_size is None else eval_batch_size, minimum=1
        )
        self.num_workers = whole_number("dataset.num_workers", num_workers, minimum=0)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.train_targets: torch.Tensor | None = None

    @property
    def in_channels(self) -> int:
        return self.image_shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return self.image_shape[1], self.image_shape[2]

    def run_record(self) -> dict[str, Any]:
        """What the data module adds to ``metrics.json`` (``validation_split: test`` where the test split validates)."""
        return {}

    def preprocessing_record(self) -> dict | None:
        """How raw images become network inputs (``BatchPreprocessor.record()``); None: batches are used as stored."""
        return None

    @property
    def class_frequencies(self) -> torch.Tensor:
        """The training split's class frequencies (sums to 1), the prior of Szegedy's general smoothing."""
        if self.train_targets is None:
            raise RuntimeError("class_frequencies is known after setup('fit')")
        counts = torch.bincount(self.train_targets.long(), minlength=self.num_classes).double()
        return (counts / counts.sum()).float()

    @staticmethod
    def evaluation_sampler(dataset: Dataset, shuffle: bool):
        """Under DDP, a sampler that gives each evaluation sample to exactly one process.

        Lightning's default ``DistributedSampler`` pads the last batch with repeated samples so every process
        gets as many; the padded duplicates would be counted twice in validation and test metrics.
        """
        import torch.distributed as dist

        if shuffle or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

        return UnrepeatedDistributedSampler(dataset, shuffle=False)

    def _loader(self, dataset: Dataset | None, shuffle: bool, batch_size: int) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() has not built this split yet")
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=self.evaluation_sampler(dataset, shuffle),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False, self.eval_batch_size)

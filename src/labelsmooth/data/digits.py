"""scikit-learn's bundled 8×8 handwritten digits: real data that ships with the package, no download."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from labelsmooth.data.base import ClassificationDataModule


def stratified_split(
    targets: np.ndarray, fractions: tuple[float, float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a stratified (train, val, test) split with the given val and test fractions."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(targets))
    val_fraction, test_fraction = fractions
    rest, test = train_test_split(indices, test_size=test_fraction, stratify=targets, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_fraction / (1.0 - test_fraction), stratify=targets[rest], random_state=seed
    )
    return np.sort(train), np.sort(val), np.sort(test)


class DigitsDataModule(ClassificationDataModule):
    """1,797 grey-scale 8×8 digits (UCI ML hand-written digits, via ``sklearn.datasets.load_digits``).

    Split train / val / test with a fixed ``split_seed`` (stratified), independent of the run's seed, so
    every run of a sweep sees the same split. Pixels (0..16) are scaled to [0, 1] and standardised with the
    training split's mean and standard deviation.
    """

    num_classes = 10
    image_shape = (1, 8, 8)

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = 512,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers)
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"dataset.{name}={value!r} must lie in (0, 1)")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError("dataset.val_fraction + dataset.test_fraction must be below 1")
        self.fractions = (float(val_fraction), float(test_fraction))
        self.split_seed = int(split_seed)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
        targets = torch.from_numpy(digits.target.astype(np.int64))
        train, val, test = stratified_split(digits.target, self.fractions, self.split_seed)
        mean, std = images[train].mean(), images[train].std()
        images = (images - mean) / std
        self.train_targets = targets[train]
        self.train_set = TensorDataset(images[train], targets[train])
        self.val_set = TensorDataset(images[val], targets[val])
        self.test_set = TensorDataset(images[test], targets[test])

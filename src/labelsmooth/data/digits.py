"""scikit-learn's bundled 8×8 digits: real data that ships with the package, no download."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from labelsmooth.data.image_data import ImageDataModule, InMemoryImages


class DigitsDataModule(ImageDataModule):
    """1,797 grey-scale 8×8 digits (UCI ML hand-written digits, via ``sklearn.datasets.load_digits``).

    Split train / val / test with a fixed ``split_seed`` (stratified, ``stratified_carve``), independent of the
    run's seed, so every run of a sweep sees the same split: ``test_fraction`` of all images is the test split
    (359 images), ``val_fraction`` of all images the validation split (269). Pixels (0..16) are stored as uint8
    (``v·255/16``, exact up to rounding) and by default standardised with the training split's mean and
    standard deviation (``normalize``); the paper's options (``pixel_mean``, ``shift``, ``hflip``,
    ``input_range``) work as for every other image data set.
    """

    name = "digits"
    num_classes = 10

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = 512,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        num_workers: int = 0,
        normalize: str = "standardize",
        input_range: Sequence[float] = (0.0, 1.0),
        shift: float = 0.0,
        hflip: bool = False,
        **kwargs: Any,
    ) -> None:
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"dataset.{name}={value!r} must lie in (0, 1)")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError("dataset.val_fraction + dataset.test_fraction must be below 1")
        super().__init__(
            None, 8, 1, batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
            val_size=val_fraction / (1.0 - test_fraction), test_size=test_fraction, split_seed=split_seed,
            in_memory=True, download=False, normalize=normalize, input_range=input_range, shift=shift, hflip=hflip,
            **kwargs,
        )  # fmt: skip
        self.fractions = (float(val_fraction), float(test_fraction))

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        if split != "train":
            return None
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
        return InMemoryImages(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(digits.target.astype(np.int64)))

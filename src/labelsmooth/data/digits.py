"""scikit-learn's bundled 8×8 digits: real data that ships with the package, no download."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from labelsmooth.data.image_data import DatasetNotFoundError, ImageDataModule
from labelsmooth.data.in_memory import InMemoryImages
from labelsmooth.errors import ConfigurationError


class DigitsDataModule(ImageDataModule):
    """1,797 grey-scale 8×8 digits (UCI ML hand-written digits, the data of ``sklearn.datasets.load_digits``).

    Split train / val / test with a fixed ``split_seed`` (stratified, ``stratified_carve``), independent of the
    run's seed, so every run of a sweep sees the same split. As for every data set without official splits,
    ``test_size`` (a fraction or a number of images) is carved from all images first, then ``val_size`` from the
    rest: the defaults 0.2 and 0.1875 give 359 test, 269 validation (15% of all) and 1,169 training images.
    Pixels (0..16) are stored as uint8 (``v·255/16``, exact up to rounding) and by default standardised with the
    training split's mean and standard deviation (``normalize``); the paper's options (``pixel_mean``, ``shift``,
    ``hflip``, ``input_range``) work as for every other image data set.
    """

    name = "digits"
    num_classes = 10
    shape = (1, 8, 8)  # channels, height, width: fixed, so its config declares none

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = 512,
        val_size: float | int = 0.1875,
        test_size: float | int = 0.2,
        split_seed: int = 0,
        num_workers: int = 0,
        normalize: str = "standardize",
        input_range: Sequence[float] = (0.0, 1.0),
        shift: float = 0.0,
        hflip: bool = False,
        **kwargs: Any,
    ) -> None:
        for fixed in {"root", "image_size", "channels", "in_memory", "download"} & set(kwargs):
            raise ConfigurationError(f"dataset.{fixed}={kwargs[fixed]} is not a setting of digits: its 8×8 grey images "
                                     "ship with scikit-learn and are read into memory")  # fmt: skip
        super().__init__(
            None, self.shape[1], self.shape[0], batch_size=batch_size, eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            val_size=val_size, test_size=test_size, split_seed=split_seed,
            in_memory=True, download=False, normalize=normalize, input_range=input_range, shift=shift, hflip=hflip,
            **kwargs,
        )  # fmt: skip

    @classmethod
    def declared_image_shape(cls, config: Mapping[str, Any]) -> tuple[int, int, int]:
        return cls.shape

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        if split != "train":
            return None
        pixels, targets = read_digits()
        images = np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)
        labels = torch.from_numpy(targets.astype(np.int64))
        return InMemoryImages(torch.from_numpy(images).unsqueeze(1), labels, [str(d) for d in range(self.num_classes)])


@functools.cache
def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """The images (N, 8, 8; values 0..16) and labels (N,) of ``sklearn.datasets.load_digits``, read as it reads
    them from the file scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``: 64 pixels and the label per
    row), without importing scikit-learn: that import brings SciPy and pandas, about 0.4 s of every run's
    start-up (``tests/test_datasets.py`` checks the arrays equal ``load_digits``'s). Read once per process (the
    parse takes about 16 ms; the jobs of a sweep and the tests build the data set many times): read-only arrays."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError("the digits data set ships with scikit-learn: pip install scikit-learn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: scikit-learn's digits file is missing (reinstall scikit-learn)")
    data = np.loadtxt(path, delimiter=",")
    pixels, labels = data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    pixels.flags.writeable = labels.flags.writeable = False
    return pixels, labels

"""Data modules. Each reports ``num_classes``, ``image_shape`` (C, H, W) and ``class_frequencies``."""

from labelsmooth.data.base import ClassificationDataModule
from labelsmooth.data.digits import DigitsDataModule

__all__ = ["ClassificationDataModule", "DigitsDataModule"]

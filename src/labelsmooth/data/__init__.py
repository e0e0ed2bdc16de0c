"""Data modules. Each reports ``num_classes``, ``image_shape`` (C, H, W) and ``class_frequencies``."""

from labelsmooth.data.base import ClassificationDataModule
from labelsmooth.data.decathlon import DecathlonDataModule
from labelsmooth.data.digits import DigitsDataModule
from labelsmooth.data.image_data import DatasetNotFoundError, DatasetUnreadableError, ImageDataModule
from labelsmooth.data.image_folder import ImageFolderDataModule
from labelsmooth.data.in_memory import InMemoryImages
from labelsmooth.data.torchvision_sets import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DTDDataModule,
    FGVCAircraftDataModule,
    Flowers102DataModule,
    GTSRBDataModule,
    ImageNetDataModule,
    ImagenetteDataModule,
    MNISTDataModule,
    OmniglotDataModule,
    SVHNDataModule,
)

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassificationDataModule",
    "DTDDataModule",
    "DatasetNotFoundError",
    "DatasetUnreadableError",
    "DecathlonDataModule",
    "DigitsDataModule",
    "FGVCAircraftDataModule",
    "Flowers102DataModule",
    "GTSRBDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "ImageNetDataModule",
    "ImagenetteDataModule",
    "InMemoryImages",
    "MNISTDataModule",
    "OmniglotDataModule",
    "SVHNDataModule",
]

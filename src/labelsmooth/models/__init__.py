"""Networks. Every constructor takes ``num_classes``, ``in_channels`` and ``image_size`` keyword arguments."""

from labelsmooth.models.mlp import MLP
from labelsmooth.models.resnet import ResNetV1

__all__ = ["MLP", "ResNetV1"]

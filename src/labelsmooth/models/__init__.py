"""Networks. Every constructor takes ``num_classes``, ``in_channels`` and ``image_size`` keyword arguments."""

from labelsmooth.models.mlp import MLP
from labelsmooth.models.resnet import ResNetV1, ResNetV2
from labelsmooth.models.timm_factory import timm_model

__all__ = ["MLP", "ResNetV1", "ResNetV2", "timm_model"]

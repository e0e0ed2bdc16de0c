"""Networks. Every constructor takes ``num_classes``, ``in_channels`` and ``image_size`` keyword arguments.
``seed_linear`` / ``SeedBackprop``: the output layer of ``MLP(backprop="seed_numpy")``, the seeds' numpy rule."""

from labelsmooth.models.mlp import MLP
from labelsmooth.models.resnet import ResNetV1, ResNetV2
from labelsmooth.models.seed_backprop import SeedBackprop, seed_linear
from labelsmooth.models.timm_factory import timm_model

__all__ = ["MLP", "ResNetV1", "ResNetV2", "SeedBackprop", "seed_linear", "timm_model"]

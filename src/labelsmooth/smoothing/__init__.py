"""Label-smoothing strategies: each one an ``nn.Module`` loss, ``loss = strategy(logits, target)``.

The package depends on torch alone, so a strategy can be used in any PyTorch training loop. Families:
``uniform`` (fixed targets: none, uniform, γ, prior), ``regularizers`` (KL to uniform, confidence penalty),
``bootstrap`` (Reed et al.), ``disturb`` (DisturbLabel), ``online`` (online label smoothing) and ``sigmoid``
(BCE heads: binary smoothing, target range).
"""

from labelsmooth.smoothing.base import (
    MixableStrategy,
    SmoothingStrategy,
    TargetDistributionStrategy,
    check_range,
)
from labelsmooth.smoothing.bootstrap import HardBootstrapping, SoftBootstrapping
from labelsmooth.smoothing.disturb import DisturbLabel
from labelsmooth.smoothing.online import OnlineLabelSmoothing
from labelsmooth.smoothing.regularizers import ConfidencePenalty, KLUniformRegularizer
from labelsmooth.smoothing.sigmoid import BinarySmoothing, SigmoidTargetStrategy, TargetRange
from labelsmooth.smoothing.uniform import CrossEntropy, GammaSmoothing, PriorSmoothing, UniformSmoothing

__all__ = [
    "BinarySmoothing",
    "ConfidencePenalty",
    "CrossEntropy",
    "DisturbLabel",
    "GammaSmoothing",
    "HardBootstrapping",
    "KLUniformRegularizer",
    "MixableStrategy",
    "OnlineLabelSmoothing",
    "PriorSmoothing",
    "SigmoidTargetStrategy",
    "SmoothingStrategy",
    "SoftBootstrapping",
    "TargetDistributionStrategy",
    "TargetRange",
    "UniformSmoothing",
    "check_range",
]

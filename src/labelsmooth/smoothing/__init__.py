"""Label-smoothing strategies: each one an ``nn.Module`` loss, ``loss = strategy(logits, target)``.

The package depends on torch alone, so a strategy can be used in any PyTorch training loop. Families:
``uniform`` (fixed targets: none, uniform, γ, prior), ``regularizers`` (KL to uniform, confidence penalty),
``bootstrap`` (Reed et al.), ``disturb`` (DisturbLabel), ``online`` (online label smoothing), ``sigmoid``
(BCE heads: binary smoothing, target range), and the calibration losses ``focal`` (focal, FLSD-53),
``logit_penalties`` (MbLS, MaxSup), ``logit_norm`` (LogitNorm) and ``relaxation`` (label relaxation).

The contract (``base``): every strategy is a ``SmoothingStrategy`` and a ``SchedulableParameters`` (its real-valued
parameters declared once, ``parameters.RealParameter``, changed in place by ``set_parameter``); the kinds
``TakesMixedTargets``, ``HasTargetDistribution`` and ``UsesClassPrior`` are abstract bases the strategies inherit.
"""

from labelsmooth.smoothing.base import (
    HasTargetDistribution,
    MixableStrategy,
    SmoothingStrategy,
    TakesMixedTargets,
    TargetDistributionStrategy,
    UsesClassPrior,
)
from labelsmooth.smoothing.bootstrap import HardBootstrapping, SoftBootstrapping
from labelsmooth.smoothing.distillation import DistillationLoss
from labelsmooth.smoothing.disturb import DisturbLabel
from labelsmooth.smoothing.focal import AdaptiveFocalLoss, FocalLoss
from labelsmooth.smoothing.logit_norm import LogitNormalization
from labelsmooth.smoothing.logit_penalties import MarginLabelSmoothing, MaxSuppression
from labelsmooth.smoothing.online import OnlineLabelSmoothing
from labelsmooth.smoothing.parameters import RealParameter, SchedulableParameters, check_range
from labelsmooth.smoothing.regularizers import ConfidencePenalty, KLUniformRegularizer
from labelsmooth.smoothing.relaxation import LabelRelaxation
from labelsmooth.smoothing.sigmoid import BinarySmoothing, SigmoidTargetStrategy, TargetRange
from labelsmooth.smoothing.uniform import CrossEntropy, GammaSmoothing, PriorSmoothing, UniformSmoothing

__all__ = [
    "AdaptiveFocalLoss",
    "BinarySmoothing",
    "ConfidencePenalty",
    "CrossEntropy",
    "DistillationLoss",
    "DisturbLabel",
    "FocalLoss",
    "GammaSmoothing",
    "HardBootstrapping",
    "HasTargetDistribution",
    "KLUniformRegularizer",
    "LabelRelaxation",
    "LogitNormalization",
    "MarginLabelSmoothing",
    "MaxSuppression",
    "MixableStrategy",
    "OnlineLabelSmoothing",
    "PriorSmoothing",
    "RealParameter",
    "SchedulableParameters",
    "SigmoidTargetStrategy",
    "SmoothingStrategy",
    "SoftBootstrapping",
    "TakesMixedTargets",
    "TargetDistributionStrategy",
    "TargetRange",
    "UniformSmoothing",
    "UsesClassPrior",
    "check_range",
]

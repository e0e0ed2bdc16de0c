"""Label-smoothing strategies: each one an ``nn.Module`` loss, ``loss = strategy(logits, target)``.

The package depends on torch alone, so a strategy can be used in any PyTorch training loop.
"""

from labelsmooth.smoothing.base import SmoothingStrategy, TargetDistributionStrategy
from labelsmooth.smoothing.uniform import CrossEntropy, GammaSmoothing, UniformSmoothing

__all__ = [
    "CrossEntropy",
    "GammaSmoothing",
    "SmoothingStrategy",
    "TargetDistributionStrategy",
    "UniformSmoothing",
]

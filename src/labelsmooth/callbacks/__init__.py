"""Lightning callbacks used by the default configuration."""

from labelsmooth.callbacks.calibration import CalibrationCallback
from labelsmooth.callbacks.contracts import Observer
from labelsmooth.callbacks.penultimate import PenultimateProjection
from labelsmooth.callbacks.precise_bn import PreciseBatchNorm
from labelsmooth.callbacks.progress import progress_bar

__all__ = ["CalibrationCallback", "Observer", "PenultimateProjection", "PreciseBatchNorm", "progress_bar"]

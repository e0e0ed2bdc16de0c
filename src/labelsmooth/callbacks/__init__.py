"""Lightning callbacks used by the default configuration."""

from labelsmooth.callbacks.calibration import CalibrationCallback
from labelsmooth.callbacks.progress import progress_bar

__all__ = ["CalibrationCallback", "progress_bar"]

"""Lightning callbacks used by the default configuration."""

from labelsmooth.callbacks.progress import progress_bar

__all__ = ["progress_bar"]

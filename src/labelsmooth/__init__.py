"""labelsmooth: label smoothing in image classification with PyTorch Lightning and Hydra.

``labelsmooth.smoothing`` (the strategies; torch alone) and ``labelsmooth.calibration`` (the metrics; also
torchmetrics, NumPy and SciPy, the core dependencies) need neither Lightning nor Hydra and drop into any
PyTorch loop. ``LabelSmoothingClassifier`` (the LightningModule; it needs the ``train`` extra) is imported
on first use, so ``import labelsmooth.smoothing`` does not import Lightning:

>>> from labelsmooth import LabelSmoothingClassifier  # doctest: +SKIP
>>> model = LabelSmoothingClassifier.load_from_checkpoint("model.ckpt", map_location="cpu")  # doctest: +SKIP
>>> model.predict(images)  # raw images as the data set stores them → class indices  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["LabelSmoothingClassifier", "RunSpecification", "__version__"]

if TYPE_CHECKING:
    from labelsmooth.module import LabelSmoothingClassifier
    from labelsmooth.specification import RunSpecification


def __getattr__(name: str) -> Any:
    if name == "LabelSmoothingClassifier":
        from labelsmooth.module import LabelSmoothingClassifier

        return LabelSmoothingClassifier
    if name == "RunSpecification":
        from labelsmooth.specification import RunSpecification

        return RunSpecification
    raise AttributeError(f"module 'labelsmooth' has no attribute {name!r}")

"""What ``metrics.json`` records about a run besides its metrics: the names of its parts and the strategy's
parameters, each written here once (training, evaluation, the sweep resume and the report read them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

PLAIN_TYPES = (int, float, str, bool, list)
# ``unsmoothed.smoothing.gamma: 1.0``: the value of a strategy parameter that means "no smoothing"
UNSMOOTHED_PREFIX = "unsmoothed."
# ``teacher.smoothing``, ``teacher.smoothing.<param>``: a distilled student's teacher
TEACHER_PREFIX = "teacher."


@runtime_checkable
class RunRecorder(Protocol):
    """A part of a run (the module, a callback) with entries for the run's ``metrics.json``."""

    def run_record(self) -> dict[str, Any]: ...


def target_name(node: Mapping[str, Any] | None) -> str:
    """The class name a config node instantiates (``_target_: labelsmooth.smoothing.GammaSmoothing`` →
    ``GammaSmoothing``); ``none`` for an empty node.

    >>> target_name({"_target_": "labelsmooth.models.ResNetV1", "depth": 20})
    'ResNetV1'
    """
    if not node or "_target_" not in node:
        return "none"
    return str(node["_target_"]).rsplit(".", 1)[-1]


def model_name(choice: str | None, model_cfg: Mapping[str, Any] | None) -> str:
    """The model as ``metrics.json`` and the report name it: the ``model=`` choice (``resnet_v1``), or, where a
    recipe picked it per data set (``mezzini2019/cifar10``), its class and depth (``ResNetV2-83``)."""
    if choice and "/" not in choice:
        return choice
    name = target_name(model_cfg)
    depth = model_cfg.get("depth") if model_cfg else None
    return f"{name}-{depth}" if depth is not None else name


def strategy_parameters(smoothing: Mapping[str, Any] | None, prefix: str = "smoothing.") -> dict[str, Any]:
    """The strategy's configured parameters (a resolved config mapping) as flat ``smoothing.<name>`` entries.

    >>> strategy_parameters({"_target_": "x.GammaSmoothing", "gamma": 0.8})
    {'smoothing.gamma': 0.8}
    """
    if not smoothing:
        return {}
    return {
        f"{prefix}{key}": value
        for key, value in smoothing.items()
        if not str(key).startswith("_") and (value is None or isinstance(value, PLAIN_TYPES))
    }


def still_improving(metrics: Mapping[str, Any]) -> bool | None:
    """Whether a run's best validation accuracy came in its last epoch (``val/acc_best_epoch == epochs - 1``, the
    epoch 0-based), so that its budget may have been too short; None when ``metrics`` lacks either field, or for a
    run of one epoch, whose best is its last whatever its trend.

    >>> still_improving({"val/acc_best_epoch": 9, "epochs": 10}), still_improving({"epochs": 10})
    (True, None)
    >>> still_improving({"val/acc_best_epoch": 0, "epochs": 1}) is None
    True
    """
    best, epochs = metrics.get("val/acc_best_epoch"), metrics.get("epochs")
    numbers = [v for v in (best, epochs) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != 2 or float(epochs) < 2:
        return None
    return float(best) == float(epochs) - 1

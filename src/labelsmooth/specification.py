"""The run specification: what a run is, resolved once, carried by every checkpoint it writes.

A checkpoint holds weights; with its specification it also says which network, strategy and batch mixing they
belong to, the data they were trained on (the data set's config, its number of classes, channels and image size,
its class names) and how raw images become network inputs (``input_range``, ``normalize`` and the training split's
statistics). So a checkpoint copied anywhere, its run directory gone, can be evaluated (``eval.py ckpt_path=...``),
loaded (``LabelSmoothingClassifier.load_from_checkpoint(path)``) and asked to predict on raw images.

The specification is stored as plain values and tensors under ``checkpoint[SPECIFICATION_KEY]``, so it loads with
``torch.load(weights_only=True)``. Parts are plain config mappings with a ``_target_`` (as Hydra writes them), built
with ``hydra.utils.instantiate``; nothing here reads a ``DictConfig`` or Hydra's runtime.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labelsmooth.errors import LabelsmoothError

SPECIFICATION_KEY = "labelsmooth_run_specification"
# Model config keys that only choose the weights training starts from (timm's pretrained=<local file>): not read
# where a checkpoint's weights replace them, so a checkpoint copied without that file evaluates and loads.
STARTING_WEIGHTS_KEYS = ("pretrained",)
SPECIFICATION_VERSION = 1


class MissingSpecificationError(LabelsmoothError, ValueError):
    """A checkpoint without a run specification (written before checkpoints carried one, or not by this project)."""


@dataclasses.dataclass
class RunSpecification:
    """A run's parts and data, resolved: see the module docstring.

    ``model``, ``smoothing``, ``augment``, ``strategy_schedule``, ``distill``, ``optimizer`` and ``scheduler`` are
    resolved config mappings (``_target_`` and arguments; ``None`` where the run has none); ``trainer`` holds the
    Trainer's settings that change what is trained (precision, gradient accumulation, batches, clipping),
    ``selection`` how the best checkpoint is selected (monitor, mode, precise BN); ``dataset`` is the data set's
    config as composed, its ``${paths...}`` interpolations kept so that an evaluation on another machine resolves
    them against its own ``paths``. ``preprocessing`` is ``BatchPreprocessor.record()``. ``names`` are the data set,
    model and strategy as ``metrics.json`` names them.
    """

    model: dict[str, Any]
    smoothing: dict[str, Any]
    dataset: dict[str, Any]
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    preprocessing: dict[str, Any]
    augment: dict[str, Any] | None = None
    strategy_schedule: dict[str, Any] | None = None
    distill: dict[str, Any] | None = None
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    trainer: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None
    class_names: list[str] | None = None
    names: dict[str, str] = dataclasses.field(default_factory=dict)
    seed: int | None = None
    n_bins: int = 15

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, *self.image_size)

    @property
    def monitors_temperature_scaled(self) -> bool:
        """Whether the checkpoint selection monitors a temperature-scaled validation value (``val/nll_ts``): then
        each validation fits a temperature, in training and in every evaluation of its checkpoints."""
        monitor = (self.selection or {}).get("callbacks.checkpoint.monitor")
        return isinstance(monitor, str) and monitor.endswith("_ts")

    def autocast(self, device_type: str) -> Any:
        """The autocast context of the run's precision (``trainer.precision``) on ``device_type``, as Lightning's
        mixed precision runs the forward pass: bfloat16 for ``bf16-mixed``, float16 for ``16-mixed`` (bfloat16 on a
        CPU, as Lightning gives it there); disabled for full precision."""
        import torch

        precision = (self.trainer or {}).get("precision")
        if precision not in ("bf16-mixed", "16-mixed"):
            return torch.autocast(device_type, enabled=False)
        half = torch.float16 if precision == "16-mixed" and device_type == "cuda" else torch.bfloat16
        return torch.autocast(device_type, dtype=half)

    def to_checkpoint(self) -> dict[str, Any]:
        """The specification as plain values and tensors (what ``torch.load(weights_only=True)`` reads back)."""
        record = dataclasses.asdict(self)
        record["image_size"] = list(self.image_size)
        record["version"] = SPECIFICATION_VERSION
        return record

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any], path: str | Path = "<checkpoint>") -> RunSpecification:
        """The specification a checkpoint carries, or a ``MissingSpecificationError`` saying how to evaluate it."""
        record = checkpoint.get(SPECIFICATION_KEY)
        if not isinstance(record, Mapping):
            raise MissingSpecificationError(
                f"{path} lacks its run specification (it was written before checkpoints carried one): evaluate it "
                "with its run directory, the checkpoint kept in <run>/checkpoints/ next to <run>/.hydra/: "
                f"python eval.py ckpt_path=<run>/checkpoints/{Path(path).name}"
            )
        fields = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in record.items() if key in fields}
        values["image_size"] = tuple(int(v) for v in values["image_size"])
        return cls(**values)

    def build_network(self, starting_weights: bool = True) -> Any:
        """The network, sized for the data (classes, channels, image size); freshly initialised, from the weights
        its model config starts training from unless ``starting_weights`` is false (where a checkpoint's weights
        replace them: ``STARTING_WEIGHTS_KEYS``)."""
        model = self.model
        if not starting_weights:
            model = {key: False if key in STARTING_WEIGHTS_KEYS else value for key, value in model.items()}
        return network_for(model, self.num_classes, self.in_channels, self.image_size)

    def build_strategy(self) -> Any:
        from hydra.utils import instantiate

        return instantiate(self.smoothing, num_classes=self.num_classes)

    def build_augment(self) -> Any:
        from hydra.utils import instantiate

        return instantiate(self.augment, num_classes=self.num_classes) if self.augment else None

    def build_optimizer_factory(self) -> Any:
        """``optimizer(params)`` (a partial); Adam with its defaults when the specification names none."""
        import functools

        import torch
        from hydra.utils import instantiate

        return instantiate(self.optimizer) if self.optimizer else functools.partial(torch.optim.Adam)

    def build_scheduler_factory(self) -> Any:
        from hydra.utils import instantiate

        return instantiate(self.scheduler) if self.scheduler else None


def network_for(model: Any, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> Any:
    """The network a model config builds for ``num_classes`` classes of ``in_channels`` x ``image_size`` images (on
    the current default device: the check before the data builds it on the meta device)."""
    from hydra.utils import instantiate

    return instantiate(model, num_classes=num_classes, in_channels=in_channels, image_size=image_size)

"""The run config's schema: every key's type and range, checked once when the config is composed, before any data.

Choice: one validation step over the composed config, not Hydra structured configs. The config groups select
classes by ``_target_`` (15 data sets, 18 strategies, timm models, any torch optimizer), so a dataclass per option
would restate every constructor's signature, and a structured config cannot type a node whose class is chosen by
an override. Instead the types of a ``_target_`` node come from the class it names: its constructor's annotations
(``trainer.max_epochs: int | None``, ``scheduler.milestones: Iterable[int]``, ``smoothing.gamma: float``), so a
new strategy, model or data set declares them once, in its signature, and its ranges once, next to the class (a
strategy's ``RealParameter`` declarations, checked when the run builds it: before any data where the data set
config declares its number of classes). The keys that are the project's own (top level, the trainer's bounds) are
declared in ``TOP_LEVEL`` below. Unknown keys stay refused: Hydra's struct mode refuses keys the config does not
have, and a key that the class's constructor does not take is refused here.

Every refusal is a ``ConfigurationError`` of one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from labelsmooth.cli.signatures import check_target_node, shown
from labelsmooth.errors import SEED_RANGE, ConfigurationError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Field:
    """A key's type (``int``, ``float``, ``bool``, ``str``, ``list``, or a tuple of them; None allowed when
    ``nullable``), range (``low``..``high``, inclusive; ``low`` excluded when ``above_low``; a number is finite)
    and, for a string, its ``choices``."""

    kind: type | tuple[type, ...]
    low: float | None = None
    high: float | None = None
    nullable: bool = False
    what: str = ""
    above_low: bool = False
    choices: tuple[str, ...] = ()

    def allowed(self) -> str:
        names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        text = " or ".join(names.get(k, k.__name__) for k in kinds)
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        opening = "(" if self.above_low else "["
        if self.low is not None and self.high is not None:
            text += f" in {opening}{_number(self.low)}, {_number(self.high)}]"
        elif self.low is not None:
            text += f" {'>' if self.above_low else '>='} {_number(self.low)}"
        if self.what:
            text += f" ({self.what})"
        return text + (" (or null)" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        if not any(_is_instance(value, kind) for kind in kinds):
            return False
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            above = self.low is None or (value > self.low if self.above_low else value >= self.low)
            finite = not isinstance(value, float) or math.isfinite(value)
            return finite and above and (self.high is None or value <= self.high)
        return not self.choices or str(value).lower() in self.choices  # as Lightning reads its choices


TOP_LEVEL: dict[str, Field] = {
    "seed": Field(int, *SEED_RANGE, what="the seed of weights, data order and augmentation"),
    "precise_bn": Field(int, 0, what="training batches; 0: off"),
    "n_bins": Field(int, 1, 10_000, what="the bins of the calibration errors"),
    "figures": Field(bool),
    "resume": Field((bool, str)),
    "resume_sweep": Field(bool),
    "ckpt_path": Field(str, nullable=True),
    "teacher_ckpt": Field(str, nullable=True),
    "optimized_metric": Field(str, nullable=True),
    "tags": Field(list),
    "save_predictions": Field(bool),
    "predictions_max_values": Field(int, 0, what="values N·K"),
}
# Keys a training run cannot do without (``~seed`` removes one).
REQUIRED = ("seed", "dataset", "model", "smoothing", "optimizer", "trainer", "paths")
ANALYSIS: dict[str, Field] = {
    "projection_classes": Field(list, nullable=True),
    "projection_images_per_class": Field(int, 1),
}
TRAINER_COUNTS: dict[str, Field] = {
    "min_epochs": Field(int, 0, nullable=True),
    "check_val_every_n_epoch": Field(int, 1, nullable=True),
    "num_sanity_val_steps": Field(int, -1, nullable=True, what="-1: all"),
    "log_every_n_steps": Field(int, 1, nullable=True),
    "max_steps": Field(int, -1, nullable=True, what="-1: no bound"),
    "accumulate_grad_batches": Field(int, 1),
    "gradient_clip_val": Field(float, 0, nullable=True, what="0: no clipping"),
    "gradient_clip_algorithm": Field(str, nullable=True, choices=("norm", "value")),
}
# The settings that torch's optimizers share, with their meaningful ranges where they are numbers (torch checks some
# of them, in its words, and not momentum's or dampening's upper bound).
OPTIMIZER: dict[str, Field] = {
    "lr": Field(float, 0, above_low=True, what="the learning rate"),
    "weight_decay": Field(float, 0),
    "momentum": Field(float, 0, 1),
    "dampening": Field(float, 0, 1),
    "eps": Field(float, 0, above_low=True),
}
SCHEDULER: dict[str, Field] = {
    "gamma": Field(float, 0, what="the learning rate's factor at each milestone"),
    "eta_min": Field(float, 0, what="the cosine schedule's last learning rate"),
    "T_max": Field(
        int,
        1,
        what="the cosine period in epochs; it follows trainer.max_epochs, -1 when trainer.max_steps or max_time "
        "bounds the run: set scheduler.T_max=<epochs> or scheduler=none",
    ),
}
# Lightning precisions that cast the weights, not the inputs: the data modules hand float32 inputs to the network.
# Lightning reads 64 and "64" as "64-true".
WEIGHT_ONLY_PRECISIONS = {"bf16-true": "bf16-mixed", "16-true": "16-mixed", "64-true": None, "64": None}
TARGET_NODES = ("trainer", "optimizer", "scheduler", "dataset", "model", "smoothing", "augment", "distill", "logger")


def validate_run_config(cfg: DictConfig, required: tuple[str, ...] = REQUIRED) -> None:
    """Refuse a ``required`` key removed, a wrong type or an out-of-range value anywhere in a composed run config,
    in one line; see the module docstring. The strategy's ranges that depend on the number of classes are checked
    when it is built."""
    for key in required:
        if key not in cfg:
            raise ConfigurationError(f"~{key}: a run needs {key}; give it a value instead of removing it")
    for key, field in TOP_LEVEL.items():
        if key in cfg:
            check(key, plain_value(cfg[key]), field)
    for key in cfg.get("analysis") or {}:
        if key not in ANALYSIS:
            raise ConfigurationError(f"analysis.{key} is not a setting: analysis takes {', '.join(ANALYSIS)}")
        check(f"analysis.{key}", plain_value(cfg.analysis[key]), ANALYSIS[key])
    if cfg.get("trainer"):  # first: the nodes that follow its bounds (scheduler.T_max) name them as it does
        check_trainer(OmegaConf.to_container(cfg.trainer, resolve=True))
    if cfg.get("dataset") and "num_classes" in cfg.dataset:
        check("dataset.num_classes", plain_value(cfg.dataset.num_classes), Field(int, 2, nullable=True))
    for name in TARGET_NODES:
        if cfg.get(name):
            check_target_node(name, OmegaConf.to_container(cfg[name], resolve=True))
    if cfg.get("strategy_schedule"):  # before the callbacks, one of which is this node: it is named as it is set
        check_target_node("strategy_schedule", OmegaConf.to_container(cfg.strategy_schedule, resolve=True))
    for name, node in (cfg.get("callbacks") or {}).items():
        if node and "_target_" in node:
            check_target_node(f"callbacks.{name}", OmegaConf.to_container(node, resolve=True))
    for key, field in OPTIMIZER.items():  # a number or text; other forms are the optimizer's own (Adafactor's eps pair)
        value = plain_value(cfg.optimizer[key]) if cfg.get("optimizer") and key in cfg.optimizer else None
        if isinstance(value, (int, float, str)):
            check(f"optimizer.{key}", value, field)
    for key, field in SCHEDULER.items():  # after the trainer: the cosine period follows trainer.max_epochs
        if cfg.get("scheduler") and key in cfg.scheduler:
            check(f"scheduler.{key}", plain_value(cfg.scheduler[key]), field)
    milestones = plain_value((cfg.get("scheduler") or {}).get("milestones"))
    if isinstance(milestones, list) and any(isinstance(m, (int, float)) and m < 0 for m in milestones):
        raise ConfigurationError(f"scheduler.milestones={milestones} must be epochs >= 0")
    max_epochs = (cfg.get("trainer") or {}).get("max_epochs")
    if (
        isinstance(milestones, list)
        and milestones
        and isinstance(max_epochs, int)
        and 0 < max_epochs <= min(milestones)
    ):
        log.warning(
            "scheduler.milestones=%s: none comes before trainer.max_epochs=%d, so the learning rate never changes in "
            "this run (set trainer.max_epochs beyond the first milestone, other milestones, or scheduler=none)",
            milestones, max_epochs,
        )  # fmt: skip
    eta_min, lr = (cfg.get("scheduler") or {}).get("eta_min"), (cfg.get("optimizer") or {}).get("lr")
    if isinstance(eta_min, (int, float)) and isinstance(lr, (int, float)) and eta_min > lr:
        raise ConfigurationError(f"scheduler.eta_min={eta_min} exceeds optimizer.lr={lr}: the cosine would raise it")


def check(key: str, value: Any, field: Field) -> None:
    if not field.accepts(value):
        raise ConfigurationError(f"{key}={shown(value)} must be {field.allowed()}")


def check_trainer(trainer: Mapping[str, Any]) -> None:
    """The bounds Lightning would accept but that cannot make a run: no epoch bound (``max_epochs`` -1 or null
    trains until killed, 0 records an untrained model), and precisions that cast the weights but not the inputs."""
    for key, field in TRAINER_COUNTS.items():
        if key in trainer:
            check(f"trainer.{key}", trainer[key], field)
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "val_check_interval", "max_steps"):
        value = trainer.get(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        neither = isinstance(value, float) and (math.isnan(value) or value > 1 and not value.is_integer())
        if number and (value == 0 or neither or value < 0 and not (key == "max_steps" and value == -1)):
            raise ConfigurationError(
                f"trainer.{key}={value} cannot make a run: a run trains, validates each epoch (its checkpoint "
                "selection) and tests; use a positive count of batches or a fraction in (0, 1]"
                + (" (max_steps: -1 for no bound)" if key == "max_steps" else "")
            )
    if trainer.get("max_time") is not None:
        check_duration("trainer.max_time", trainer["max_time"])
    if isinstance(interval := trainer.get("val_check_interval"), (str, dict)):
        raise ConfigurationError(
            f"trainer.val_check_interval={shown(interval)} is not a number of batches or a fraction of an epoch: "
            "validations at times would depend on the machine's speed, and so would the checkpoint they select"
        )
    max_epochs = trainer.get("max_epochs")
    bounded = (trainer.get("max_steps") not in (None, -1)) or trainer.get("max_time") is not None
    if not bounded:
        check(
            "trainer.max_epochs", max_epochs, Field(int, 1, what="unless trainer.max_steps or max_time bounds the run")
        )
    elif max_epochs is not None:
        check("trainer.max_epochs", max_epochs, Field(int, -1, what="-1: bounded by max_steps or max_time"))
    for key in ("min_epochs", "check_val_every_n_epoch"):  # a validation after the last epoch selects nothing
        value = trainer.get(key)
        if isinstance(value, int) and isinstance(max_epochs, int) and -1 < max_epochs < value:
            raise ConfigurationError(f"trainer.{key}={value} exceeds trainer.max_epochs={max_epochs}: it ends first")
    precision = str(trainer.get("precision"))
    if precision in WEIGHT_ONLY_PRECISIONS:
        nearest = WEIGHT_ONLY_PRECISIONS[precision] or "32-true"
        options = [nearest, *(p for p in ("16-mixed", "bf16-mixed", "32-true") if p != nearest)]
        raise ConfigurationError(
            f"trainer.precision={precision} is not supported: it casts the weights but the data modules give float32 "
            f"inputs. Use {', '.join(options[:-1])} or {options[-1]}"
        )


def check_duration(key: str, value: Any) -> None:
    """A duration that Lightning's ``Timer`` reads (``'DD:HH:MM:SS'``, or ``timedelta``'s keywords as a mapping)
    and that is longer than zero."""
    from pytorch_lightning.callbacks import Timer

    try:
        seconds = Timer(duration=value, verbose=False).time_remaining() if isinstance(value, (str, dict)) else None
    except Exception:  # Lightning's MisconfigurationException for the text, timedelta's TypeError for the keys
        seconds = None
    if seconds is None or seconds <= 0:
        raise ConfigurationError(
            f"{key}={shown(value)} must be a duration longer than 0: 'DD:HH:MM:SS' (e.g. '00:12:00:00') or a "
            "mapping of timedelta's keys (e.g. {hours: 12})"
        )


def check_training_precision(trainer: Mapping[str, Any]) -> None:
    """Refuse to train in float16 on the CPU: Lightning would train in bfloat16 instead (with a warning), while the
    run's record and its checkpoint's training settings said ``16-mixed``. (An evaluation records the precision it
    computed in.)"""
    import torch

    precision, accelerator = str(trainer.get("precision")), str(trainer.get("accelerator", "auto"))
    if precision in ("16-mixed", "16") and (
        accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    ):
        raise ConfigurationError(
            f"trainer.precision={precision} needs a GPU: on the CPU Lightning would train in bf16-mixed instead, "
            "which the run's record would not say. Use trainer.precision=bf16-mixed (or 32-true) on the CPU"
        )


def plain_value(value: Any) -> Any:
    """A config value as Python holds it: a node (a list or dict given) as a container, resolved."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _is_instance(value: Any, kind: type) -> bool:
    """``isinstance`` as a config reads it: a bool is no number, an integer is a number."""
    if kind in (int, float) and isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    if kind is list:
        return isinstance(value, (list, tuple))
    return isinstance(value, kind)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"

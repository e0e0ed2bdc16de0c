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

import collections.abc
import contextlib
import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from labelsmooth.errors import SEED_RANGE, ConfigurationError, first_line


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
    eta_min, lr = (cfg.get("scheduler") or {}).get("eta_min"), (cfg.get("optimizer") or {}).get("lr")
    if isinstance(eta_min, (int, float)) and isinstance(lr, (int, float)) and eta_min > lr:
        raise ConfigurationError(f"scheduler.eta_min={eta_min} exceeds optimizer.lr={lr}: the cosine would raise it")


def check(key: str, value: Any, field: Field) -> None:
    if not field.accepts(value):
        raise ConfigurationError(f"{key}={_shown(value)} must be {field.allowed()}")


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


def check_target_node(name: str, node: Mapping[str, Any]) -> None:
    """Each key of a ``_target_`` node against the constructor it names: unknown keys (unless it takes
    ``**kwargs``) and values that do not fit the parameter's annotation are refused."""
    target = node.get("_target_")
    if not isinstance(target, str):
        return
    try:
        from hydra.utils import get_object

        constructor = get_object(target)
    except Exception as error:  # an import error of the target: the build reports it with its cause
        raise ConfigurationError(f"{name}._target_={target} cannot be imported ({first_line(error)})") from None
    parameters, hints = _signature(constructor)
    if parameters is None:
        return
    for key, value in node.items():
        if str(key).startswith("_"):
            continue
        if value == "???":
            raise ConfigurationError(f"{name}.{key} is missing: give it, e.g. {name}.{key}=<value>")
        if (refusal := unknown_parameter(name, target, parameters, str(key), value)) is not None:
            raise refusal
        annotation = hints.get(key, inspect.Parameter.empty)
        if annotation is not inspect.Parameter.empty and not matches(value, annotation):
            raise ConfigurationError(f"{name}.{key}={_shown(value)} must be {describe_type(annotation)}")


def unknown_parameter(
    name: str, target: str, parameters: Mapping[str, inspect.Parameter], key: str, value: Any
) -> ConfigurationError | None:
    """The refusal of ``name.key=value`` when the constructor of ``target`` (its ``parameters``) takes no parameter
    ``key`` (nor ``**kwargs``), with the closest one it takes; None when it takes it."""
    from difflib import get_close_matches

    if key in parameters or _takes_any_keyword(parameters):
        return None
    accepted = [k for k, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    close = get_close_matches(key, accepted, n=1)
    hint = f"; did you mean {name}.{close[0]}?" if close else ""
    return ConfigurationError(
        f"{name}.{key}={_shown(value)} is not a setting: {target.rsplit('.', 1)[-1]} takes no parameter {key!r} "
        f"(it takes: {', '.join(accepted)}){hint}"
    )


def constructor_parameters(target: str) -> Mapping[str, inspect.Parameter] | None:
    """The parameters of the constructor a ``_target_`` names (None when they cannot be read)."""
    from hydra.utils import get_object

    return _signature(get_object(target))[0]


def matches(value: Any, annotation: Any) -> bool:
    """Whether a config value (None, bool, int, float, str, list, dict) fits a type annotation; True for types a
    config value cannot be checked against (classes, callables, unresolved forward references)."""
    if annotation in (Any, inspect.Parameter.empty, object) or isinstance(annotation, (str, typing.ForwardRef)):
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if annotation is type(None):
        return value is None
    if value is None:
        return False
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    sequence_types = (list, tuple, collections.abc.Sequence, collections.abc.Iterable, collections.abc.Collection)
    if origin in sequence_types or annotation in sequence_types:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            return isinstance(value, str) and (origin or annotation) is collections.abc.Iterable and not args
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args, strict=True))
        return not args or all(matches(v, args[0]) for v in value)
    if origin in (dict, collections.abc.Mapping) or annotation in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return True


def describe_type(annotation: Any) -> str:
    """A type annotation in a user's words (``int | None`` → ``an integer (or null)``)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(dict.fromkeys(kinds)) + (" (or null)" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if annotation in names:
        return names[annotation]
    if args and origin not in (dict, collections.abc.Mapping):
        return f"a list of {describe_type(args[0]).removeprefix('an ').removeprefix('a ')}s"
    return getattr(annotation, "__name__", str(annotation))


def _signature(constructor: Callable) -> tuple[Mapping[str, inspect.Parameter] | None, dict[str, Any]]:
    """The constructor's parameters (of ``__init__`` for a class, less ``self``) and their resolved annotations.
    A class of the project whose ``__init__`` takes ``**kwargs`` passes them to its base classes' ``__init__``, so
    it takes theirs, down to the first one without ``**kwargs`` (``DigitsDataModule`` → ``ImageDataModule``); the
    ``**kwargs`` stay when every base takes them, and for any other class (yours may send them elsewhere)."""
    try:
        parameters = dict(inspect.signature(constructor).parameters)
    except (TypeError, ValueError):
        return None, {}
    hints = _annotations(constructor.__init__ if inspect.isclass(constructor) else constructor, parameters)
    if not inspect.isclass(constructor) or not constructor.__module__.startswith("labelsmooth."):
        return parameters, hints
    for base in constructor.__mro__[1:]:
        if not _takes_any_keyword(parameters) or base is object:
            break
        if "__init__" not in vars(base):
            continue
        own = {k: p for k, p in inspect.signature(base.__init__).parameters.items() if k != "self"}
        keywords = {k: p for k, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        inherited = {k: p for k, p in own.items() if k not in keywords and p.kind is not p.VAR_POSITIONAL}
        hints = {**_annotations(base.__init__, own), **hints}
        parameters = {**keywords, **inherited}
    return parameters, hints


def _takes_any_keyword(parameters: Mapping[str, inspect.Parameter]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _annotations(function: Callable, parameters: Mapping[str, inspect.Parameter]) -> dict[str, Any]:
    """The resolved annotations of ``function``'s ``parameters``."""
    with contextlib.suppress(Exception):  # e.g. a name imported only for type checkers: then one by one, below
        return typing.get_type_hints(function)
    namespace = {**vars(collections.abc), **vars(typing), **getattr(function, "__globals__", {})}
    hints = {}
    for name, parameter in parameters.items():
        annotation = parameter.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # noqa: S307 - an annotation of installed code
            except Exception:  # a type not importable here: the constructor checks the value itself
                continue
        hints[name] = annotation
    return hints


def plain_value(value: Any) -> Any:
    """A config value as Python holds it: a node (a list or dict given) as a container, resolved."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _shown(value: Any) -> str:
    return "null" if value is None else str(value) if isinstance(value, (int, float, str)) else repr(value)


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

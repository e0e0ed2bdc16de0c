"""Schedules of one parameter of the smoothing strategy over the epochs of a run (``strategy_schedule=<option>``).

Label smoothing is often used for part of training only (two-stage label smoothing: Xu, Xu, Qian, Li, Jin,
"Towards Understanding Label Smoothing", 2020) or with a ramped weight (MaxSup's α, an annealed ε). A schedule is a
Lightning callback that, at the start of every training epoch, sets the value of ``strategy_schedule.parameter``
that the epoch uses on the strategy, in place (``pl_module.criterion``, a ``SchedulableParameters``, whose
``set_parameter`` checks the value against the parameter's declared range, as the constructor does), and logs it as
``schedule/<parameter>`` once per epoch. The values applied so far are saved in checkpoints: a resumed run
re-applies the checkpoint's value when it is restored (before its first training step) and refuses a checkpoint
written under another schedule; evaluating a checkpoint sets the strategy to the value its epoch trained with (no
strategy's predictions depend on it: LogitNorm is evaluated on the raw logits). ``run_record()`` puts the schedule,
its values per epoch and the final value into ``metrics.json``.

The parameter defaults to the strategy's only real-valued parameter (an error names them where it has several or
none). Values are functions of the epoch index ``e`` alone, ``0 <= e < E`` with ``E = trainer.max_epochs``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from labelsmooth.errors import ConfigurationError, whole_number
from labelsmooth.smoothing import SchedulableParameters


def only_numeric_parameter(strategy: SchedulableParameters) -> str:
    """The name of the strategy's only real-valued parameter, or a ``ConfigurationError`` saying what to set."""
    names = list(strategy.numeric_parameters())
    if len(names) == 1:
        return names[0]
    if not names:
        raise ConfigurationError(
            f"strategy_schedule: the strategy {type(strategy).__name__} has no real-valued parameter to schedule."
        )
    raise ConfigurationError(
        f"strategy_schedule.parameter=null, but the strategy {type(strategy).__name__} has {len(names)} real-valued "
        f"parameters ({', '.join(names)}): name the one to schedule, e.g. strategy_schedule.parameter={names[0]}."
    )


class StrategyParameterSchedule(Callback):
    """A value of ``parameter`` per epoch, ``value_at(epoch)``, applied at each epoch start; see the module doc.

    Subclasses define ``kind`` (the config option), ``value_at`` and ``definition`` (what must not change between
    a checkpoint and the run that resumes from it).
    """

    kind: ClassVar[str]

    def __init__(self, parameter: str | None = None) -> None:
        if parameter is not None and not isinstance(parameter, str):
            raise ConfigurationError(f"strategy_schedule.parameter={parameter!r} must be a parameter name or null.")
        self.parameter = parameter
        self.configured: float = math.nan  # the strategy's configured value of the parameter
        self.max_epochs = 0
        self.applied: dict[int, float] = {}  # epoch -> value it trained with
        self._strategy: SchedulableParameters | None = None

    @property
    def state_key(self) -> str:
        return "StrategyParameterSchedule"  # one key for every kind, so a checkpoint of another kind is recognised

    def value_at(self, epoch: int) -> float:  # pragma: no cover
        raise NotImplementedError

    def definition(self) -> dict[str, Any]:
        return {"parameter": self.parameter}

    def resolve(self, strategy: SchedulableParameters) -> None:
        """Kind-specific defaults that depend on the strategy (called once, with ``configured`` set)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._strategy is None:  # else validate / test after fit: the schedule is already set up
            self.bind(pl_module.criterion, trainer.max_epochs)  # LabelSmoothingClassifier.criterion

    def bind(self, strategy: Any, max_epochs: int | None) -> None:
        """Schedule ``strategy``'s parameter over ``max_epochs`` epochs; a ``ConfigurationError`` when the strategy
        has no such parameter or the schedule takes it out of its range (checked at the first and the last epoch:
        every schedule is monotone)."""
        if not isinstance(strategy, SchedulableParameters):
            raise ConfigurationError(
                f"strategy_schedule={self.kind} needs a smoothing strategy with schedulable parameters (a "
                f"SmoothingStrategy), not {type(strategy).__name__}."
            )
        if self.parameter is None:
            self.parameter = only_numeric_parameter(strategy)
        numeric = strategy.numeric_parameters()
        if self.parameter not in numeric:
            raise ConfigurationError(
                f"strategy_schedule.parameter={self.parameter}: the strategy {type(strategy).__name__} has no such "
                f"real-valued parameter (it has: {', '.join(numeric) or 'none'})."
            )
        if max_epochs is None or max_epochs < 1:
            raise ConfigurationError(
                f"strategy_schedule={self.kind} is defined over trainer.max_epochs, which is {max_epochs}: set it."
            )
        self.max_epochs = int(max_epochs)
        self.configured = float(numeric[self.parameter])
        self.resolve(strategy)
        for epoch in sorted({0, self.max_epochs - 1}):
            value = self.value_at(epoch)
            try:
                strategy.check_parameter(self.parameter, value)
            except ConfigurationError as error:
                raise ConfigurationError(
                    f"strategy_schedule={self.kind} sets {self.parameter}={value:g} at epoch {epoch}: {error}"
                ) from None
        self._strategy = strategy

    @property
    def strategy(self) -> SchedulableParameters:
        """The strategy set up by ``setup``."""
        if self._strategy is None:
            raise RuntimeError(f"strategy_schedule={self.kind} is used before the trainer set it up")
        return self._strategy

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        self.applied[epoch] = self.value_at(epoch)
        self.strategy.set_parameter(self.parameter, self.applied[epoch])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The same value on every process; sync_dist only quiets Lightning's advice under DDP.
        value = self.applied[trainer.current_epoch]
        pl_module.log(f"schedule/{self.parameter}", value, on_step=False, on_epoch=True, sync_dist=True)

    def state_dict(self) -> dict[str, Any]:
        epochs = sorted(self.applied)
        return {
            "kind": self.kind,
            "definition": self.definition(),
            "epochs": epochs,
            "values": [self.applied[e] for e in epochs],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks after setup (fit: resume; validate / test: the evaluated checkpoint).
        written = {"kind": state_dict["kind"], **state_dict["definition"]}
        wanted = {"kind": self.kind, **self.definition()}
        if written != wanted:
            raise ConfigurationError(
                f"The checkpoint was written under the parameter schedule {written}; this run configures {wanted}. "
                "Resume with the checkpoint's strategy_schedule (and trainer.max_epochs), or start a new run."
            )
        restored = dict(zip(state_dict["epochs"], state_dict["values"], strict=True))
        self.applied.update(restored)  # after fit, the evaluated checkpoint's history is a prefix of the run's
        if restored and self._strategy is not None:
            self._strategy.set_parameter(self.parameter, restored[max(restored)])

    def run_record(self) -> dict[str, Any]:
        """``metrics.json`` entries: the schedule, its definition, the value of each trained epoch, the last epoch's
        value and the value the final evaluation ran with (that of the evaluated checkpoint)."""
        record: dict[str, Any] = {"strategy_schedule": self.kind}
        record.update({f"strategy_schedule.{key}": value for key, value in self.definition().items()})
        if self.applied:
            epochs = sorted(self.applied)
            record["strategy_schedule.values"] = [self.applied[e] for e in epochs]
            record["strategy_schedule.final_value"] = self.applied[epochs[-1]]
        if self._strategy is not None:
            record["strategy_schedule.evaluated_value"] = self._strategy.numeric_parameters()[self.parameter]
        return record


class TwoStageSchedule(StrategyParameterSchedule):
    """Two-stage label smoothing (Xu et al. 2020, "Towards Understanding Label Smoothing", TSLA): the configured
    value for epochs ``0 … until_epoch - 1``, then the strategy's unsmoothed value (``unsmoothed_value``).

    ``until_epoch=0`` trains as the unsmoothed strategy from the first step; ``until_epoch >= E`` as the
    strategy itself.
    """

    kind = "two_stage"

    def __init__(self, until_epoch: int, parameter: str | None = None) -> None:
        super().__init__(parameter)
        self.until_epoch = whole_number("strategy_schedule.until_epoch", until_epoch, 0)
        self.switch_value = math.nan

    def resolve(self, strategy: SchedulableParameters) -> None:
        try:
            self.switch_value = type(strategy).unsmoothed_value(self.parameter)
        except ValueError as error:
            raise ConfigurationError(
                f"strategy_schedule=two_stage switches to the unsmoothed value of {self.parameter}: {error}."
            ) from error

    def value_at(self, epoch: int) -> float:
        return self.configured if epoch < self.until_epoch else self.switch_value

    def definition(self) -> dict[str, Any]:
        return {**super().definition(), "until_epoch": self.until_epoch}


class LinearSchedule(StrategyParameterSchedule):
    """From ``start`` at epoch 0 to ``end`` at the last epoch ``E - 1``:
    ``value(e) = (1 - w)·start + w·end`` with ``w = e / (E - 1)`` (``w = 0`` when ``E = 1``).

    ``start: null`` is the strategy's configured value, ``end: null`` its unsmoothed value (an annealing to no
    smoothing); give both to ramp a weight up instead (``start=0``).
    """

    kind = "linear"

    def __init__(self, parameter: str | None = None, start: float | None = None, end: float | None = None) -> None:
        super().__init__(parameter)
        for name, value in (("start", start), ("end", end)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigurationError(f"strategy_schedule.{name}={value!r} must be a number or null.")
        self.start_given, self.end_given = start, end
        self.start = self.end = math.nan

    def resolve(self, strategy: SchedulableParameters) -> None:
        self.start = self.configured if self.start_given is None else float(self.start_given)
        if self.end_given is not None:
            self.end = float(self.end_given)
            return
        try:
            self.end = type(strategy).unsmoothed_value(self.parameter)
        except ValueError as error:
            raise ConfigurationError(
                f"strategy_schedule.end=null is the unsmoothed value of {self.parameter}, but: {error}. "
                "Set strategy_schedule.end."
            ) from error

    def weight(self, fraction: float) -> float:
        """The weight of ``end`` at ``fraction`` = e / (E - 1) of the run."""
        return fraction

    def value_at(self, epoch: int) -> float:
        fraction = min(epoch / (self.max_epochs - 1), 1.0) if self.max_epochs > 1 else 0.0
        w = self.weight(fraction)
        return (1.0 - w) * self.start + w * self.end

    def definition(self) -> dict[str, Any]:
        return {**super().definition(), "start": self.start, "end": self.end, "max_epochs": self.max_epochs}


class CosineSchedule(LinearSchedule):
    """From ``start`` to ``end`` along half a cosine: ``w = (1 - cos(π·e/(E - 1)))/2`` in ``LinearSchedule``'s
    ``value(e) = (1 - w)·start + w·end`` (flat at both ends, as the cosine learning-rate schedule)."""

    kind = "cosine"

    def weight(self, fraction: float) -> float:
        return 0.5 * (1.0 - math.cos(math.pi * fraction))

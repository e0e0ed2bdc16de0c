"""Schedules of a strategy parameter (``strategy_schedule=two_stage|linear|cosine``) and ``set_parameter``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import hydra
import pytest
import torch

from labelsmooth.callbacks.strategy_schedule import CosineSchedule, LinearSchedule, TwoStageSchedule
from labelsmooth.errors import ConfigurationError
from labelsmooth.runs.layout import RunDirectory
from labelsmooth.smoothing import (
    BinarySmoothing,
    CrossEntropy,
    FocalLoss,
    GammaSmoothing,
    LogitNormalization,
    MarginLabelSmoothing,
    MaxSuppression,
    OnlineLabelSmoothing,
    SmoothingStrategy,
    TargetRange,
    UniformSmoothing,
)
from tests.conftest import compose_train_config, run_training

# --- set_parameter ------------------------------------------------------------------------------------------------


def test_set_parameter_changes_the_loss_as_a_strategy_built_with_the_value() -> None:
    logits, labels = torch.randn(8, 10) * 3, torch.randint(0, 10, (8,))
    for strategy, name, value in [
        (UniformSmoothing(10, 0.1), "epsilon", 0.3),
        (FocalLoss(10, 3.0), "gamma", 0.5),
        (MaxSuppression(10, 0.1), "alpha", 0.4),
        (BinarySmoothing(10, 0.1), "epsilon", 0.25),  # derived on / off targets follow
        (TargetRange(10, 0.01, 0.99), "low", 0.2),  # stored as off_value
        (LogitNormalization(10, 0.04), "temperature", 0.5),
    ]:
        strategy.set_parameter(name, value)
        rebuilt = type(strategy)(10, **{**strategy.hyperparameters(), name: value})
        assert strategy.hyperparameters() == rebuilt.hyperparameters(), strategy
        torch.testing.assert_close(strategy(logits, labels), rebuilt(logits, labels), rtol=0, atol=0)


def test_set_parameter_refuses_values_out_of_range_and_unknown_or_built_in_parameters() -> None:
    strategy = UniformSmoothing(10, 0.1)
    with pytest.raises(ValueError, match=r"epsilon=1\.5 is out of range.*\[0, 1\)"):
        strategy.set_parameter("epsilon", 1.5)
    assert strategy.epsilon == 0.1
    with pytest.raises(ValueError, match="UniformSmoothing has no real-valued parameter 'gamma'.*epsilon"):
        strategy.set_parameter("gamma", 0.5)
    with pytest.raises(ValueError, match=r"high=0\.99 is out of range"):
        TargetRange(10, 0.01, 0.99).set_parameter("low", 0.995)
    with pytest.raises(ValueError, match="initial_epsilon sets up the strategy's state"):
        OnlineLabelSmoothing(10).set_parameter("initial_epsilon", 0.2)
    online = OnlineLabelSmoothing(10)
    online.set_parameter("alpha", 0.8)
    assert online.alpha == 0.8


def test_set_parameter_changes_the_value_in_place_without_building_a_strategy(monkeypatch) -> None:
    strategies = [
        (UniformSmoothing(10, 0.1), "epsilon", 0.3),
        (GammaSmoothing(10, 0.9), "gamma", 0.95),
        (BinarySmoothing(10, 0.1, convention="keras"), "epsilon", 0.25),
        (TargetRange(10, 0.01, 0.99), "high", 0.9),
        (OnlineLabelSmoothing(10, 0.5, initial_epsilon=0.2), "alpha", 0.8),
    ]
    built = []
    original = SmoothingStrategy.__init__

    def counting_init(self, num_classes: int) -> None:
        built.append(type(self).__name__)
        original(self, num_classes)

    monkeypatch.setattr(SmoothingStrategy, "__init__", counting_init)
    for strategy, name, value in strategies:
        buffers = dict(strategy.named_buffers())  # the tensors themselves (online smoothing's targets)
        strategy.set_parameter(name, value)
        assert strategy.numeric_parameters()[name] == value and getattr(strategy, name) == value
        assert all(dict(strategy.named_buffers())[key] is tensor for key, tensor in buffers.items())
        strategy.check_parameter(name, value)
    assert built == []
    binary = strategies[2][0]
    assert (binary.off_value, binary.on_value) == (0.125, 0.875)  # derived from ε when read: 1 - ε/2, ε/2


def test_an_out_of_range_scheduled_value_is_refused_with_the_one_line_message() -> None:
    for strategy, name, value, message in [
        (
            UniformSmoothing(10, 0.1),
            "epsilon",
            1.5,
            "smoothing.epsilon=1.5 is out of range: it must lie in [0, 1). At ε = 1 the target is the same for every "
            "label.",
        ),
        (FocalLoss(10, 3.0), "gamma", -0.1, "smoothing.gamma=-0.1 is out of range: it must lie in [0, inf)."),
        (
            GammaSmoothing(10, 0.9),
            "gamma",
            0.05,
            "smoothing.gamma=0.05 is out of range: it must lie in (0.1, 1]. With K=10 classes γ must exceed "
            "1/K=0.1 so the true class keeps the most mass.",
        ),
        (
            TargetRange(10, 0.01, 0.99),
            "low",
            0.995,
            "smoothing.high=0.99 is out of range: it must lie in (0.995, 1]. high must exceed low.",
        ),
        (
            LogitNormalization(10),
            "temperature",
            math.nan,
            "smoothing.temperature=nan must be a number in the range 0..inf.",
        ),
        (
            OnlineLabelSmoothing(10),
            "initial_epsilon",
            0.2,
            "OnlineLabelSmoothing.initial_epsilon sets up the strategy's state when it is built; it cannot be "
            "changed during training.",
        ),
    ]:
        before = strategy.hyperparameters()
        for attempt in (strategy.check_parameter, strategy.set_parameter):
            with pytest.raises(ConfigurationError) as refused:
                attempt(name, value)
            assert str(refused.value) == message
        assert strategy.hyperparameters() == before
    schedule, uniform = LinearSchedule(start=0.1, end=0.0), UniformSmoothing(10, 0.1)
    schedule.setup(SimpleNamespace(max_epochs=3, current_epoch=0), Recorder(uniform), "fit")
    with pytest.raises(
        ConfigurationError, match=r"^smoothing\.epsilon=-0\.5 is out of range: it must lie in \[0, 1\)\.$"
    ):
        uniform.set_parameter("epsilon", -0.5)
    assert uniform.epsilon == 0.1


def test_a_schedule_needs_a_strategy_with_schedulable_parameters() -> None:
    with pytest.raises(
        ConfigurationError, match="needs a smoothing strategy with schedulable parameters.*CrossEntropyLoss"
    ):
        TwoStageSchedule(until_epoch=1).setup(
            SimpleNamespace(max_epochs=3, current_epoch=0), Recorder(torch.nn.CrossEntropyLoss()), "fit"
        )


# --- the schedules' values ------------------------------------------------------------------------------------------


class Recorder:
    """A stand-in LightningModule: the strategy as ``criterion`` and what ``log`` received."""

    def __init__(self, criterion) -> None:
        self.criterion = criterion
        self.logged: list[tuple[str, float]] = []

    def log(self, name: str, value: float, **kwargs) -> None:
        self.logged.append((name, value))


def run_epochs(schedule, strategy, max_epochs: int, epochs: range | None = None) -> list[float]:
    """The parameter's value on the strategy during each epoch, as the Trainer's hooks would set it."""
    module = Recorder(strategy)
    trainer = SimpleNamespace(max_epochs=max_epochs, current_epoch=0)
    schedule.setup(trainer, module, "fit")
    seen = []
    for epoch in epochs if epochs is not None else range(max_epochs):
        trainer.current_epoch = epoch
        schedule.on_train_epoch_start(trainer, module)
        seen.append(strategy.numeric_parameters()[schedule.parameter])
        schedule.on_train_epoch_end(trainer, module)
    assert module.logged == [(f"schedule/{schedule.parameter}", v) for v in seen]
    return seen


def test_two_stage_uses_the_configured_value_then_the_unsmoothed_one() -> None:
    assert run_epochs(TwoStageSchedule(until_epoch=2), UniformSmoothing(10, 0.1), 4) == [0.1, 0.1, 0.0, 0.0]
    assert run_epochs(TwoStageSchedule(until_epoch=0), UniformSmoothing(10, 0.1), 2) == [0.0, 0.0]
    assert run_epochs(TwoStageSchedule(until_epoch=9), FocalLoss(10, 3.0), 2) == [3.0, 3.0]
    margin = run_epochs(TwoStageSchedule(until_epoch=1, parameter="alpha"), MarginLabelSmoothing(10), 2)
    assert margin == [0.1, 0.0]


def test_linear_and_cosine_go_from_start_to_end_over_the_run() -> None:
    linear = run_epochs(LinearSchedule(), UniformSmoothing(10, 0.2), 5)
    assert linear == pytest.approx([0.2, 0.15, 0.1, 0.05, 0.0], abs=1e-15)
    assert linear[0] == 0.2 and linear[-1] == 0.0  # exactly the configured and the unsmoothed values
    ramp = run_epochs(LinearSchedule(start=0.0, end=0.3), MaxSuppression(10, 0.1), 4)
    assert ramp == pytest.approx([0.0, 0.1, 0.2, 0.3])
    cosine = run_epochs(CosineSchedule(start=0.4, end=0.0), UniformSmoothing(10, 0.1), 5)
    expected = [0.4 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)]
    assert cosine == pytest.approx(expected, abs=1e-15) and cosine[0] == 0.4 and cosine[-1] == 0.0
    assert run_epochs(LinearSchedule(), UniformSmoothing(10, 0.2), 1) == [0.2]


@pytest.mark.parametrize(
    "schedule,strategy,message",
    [
        (TwoStageSchedule(until_epoch=1), MarginLabelSmoothing(10), r"has 2 real-valued parameters \(margin, alpha\)"),
        (TwoStageSchedule(until_epoch=1), CrossEntropy(10), "CrossEntropy has no real-valued parameter to schedule"),
        (TwoStageSchedule(until_epoch=1, parameter="gamma"), UniformSmoothing(10), "no such real-valued parameter"),
        (TwoStageSchedule(until_epoch=1), LogitNormalization(10), "declares no unsmoothed value for 'temperature'"),
        (LinearSchedule(), LogitNormalization(10), "Set strategy_schedule.end"),
        (LinearSchedule(start=0.1, end=1.5), UniformSmoothing(10), r"epsilon=1\.5 is out of range"),
        (CosineSchedule(start=-0.1, end=0.0), FocalLoss(10), r"gamma=-0\.1 is out of range"),
    ],
)
def test_schedules_that_cannot_work_are_refused_before_training(schedule, strategy, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schedule.setup(SimpleNamespace(max_epochs=3, current_epoch=0), Recorder(strategy), "fit")


def test_schedule_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match=r"until_epoch=-1 must be an integer >= 0"):
        TwoStageSchedule(until_epoch=-1)
    with pytest.raises(ValueError, match=r"strategy_schedule.start='a' must be a number"):
        LinearSchedule(start="a")


def test_checkpoint_state_restores_the_value_and_refuses_another_schedule() -> None:
    schedule, strategy = LinearSchedule(), UniformSmoothing(10, 0.3)
    assert run_epochs(schedule, strategy, 4, range(2)) == pytest.approx([0.3, 0.2])
    state = schedule.state_dict()
    resumed_strategy = UniformSmoothing(10, 0.3)
    resumed = LinearSchedule()
    resumed.setup(SimpleNamespace(max_epochs=4, current_epoch=0), Recorder(resumed_strategy), "fit")
    resumed.load_state_dict(state)
    assert resumed_strategy.epsilon == pytest.approx(0.2)  # applied on restore, before any training step
    assert resumed.run_record()["strategy_schedule.values"] == pytest.approx([0.3, 0.2])
    for other, max_epochs in [(LinearSchedule(), 6), (CosineSchedule(), 4), (TwoStageSchedule(until_epoch=2), 4)]:
        other.setup(SimpleNamespace(max_epochs=max_epochs, current_epoch=0), Recorder(UniformSmoothing(10, 0.3)), "fit")
        with pytest.raises(ValueError, match="The checkpoint was written under the parameter schedule"):
            other.load_state_dict(state)


# --- in training ----------------------------------------------------------------------------------------------------

QUICK = ["model=mlp", "trainer.max_epochs=2", "trainer.limit_train_batches=3", "optimizer.lr=0.01"]
RESULT_KEYS = ("val/acc", "val/nll", "val/ece", "test/acc", "test/nll", "test/ece", "test/brier", "test/nll_ts")


def trained(tmp_path: Path, name: str, overrides: list[str]) -> tuple[dict, dict[str, torch.Tensor]]:
    """metrics.json and the final weights (``last.ckpt``) of a run."""
    run = RunDirectory(tmp_path / name)
    summary = run_training(run.root, [*QUICK, *overrides])
    assert summary["status"] == "completed", summary.get("error")
    weights = torch.load(run.last_checkpoint, weights_only=True)["state_dict"]
    return json.loads(run.metrics_json.read_text()), weights


def assert_same_training(a: tuple[dict, dict], b: tuple[dict, dict]) -> None:
    (metrics_a, weights_a), (metrics_b, weights_b) = a, b
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key
    assert {k: metrics_a[k] for k in RESULT_KEYS} == {k: metrics_b[k] for k in RESULT_KEYS}


def test_two_stage_from_epoch_zero_trains_as_the_unsmoothed_strategy(tmp_path: Path) -> None:
    """``until_epoch=0``: ε = 0 from the first step, the same computation as ``smoothing.epsilon=0.0`` (the same
    class, so the same float operations; ``smoothing=none`` is another class and another code path)."""
    two_stage = ["smoothing=uniform", "strategy_schedule=two_stage", "strategy_schedule.until_epoch=0", "logger=csv"]
    scheduled = trained(tmp_path, "a", two_stage)
    assert_same_training(scheduled, trained(tmp_path, "b", ["smoothing=uniform", "smoothing.epsilon=0.0"]))
    metrics = scheduled[0]
    assert metrics["strategy_schedule"] == "two_stage" and metrics["strategy_schedule.parameter"] == "epsilon"
    assert metrics["strategy_schedule.values"] == [0.0, 0.0] and metrics["strategy_schedule.final_value"] == 0.0
    assert metrics["smoothing.epsilon"] == 0.1  # the configured value
    (logged,) = (tmp_path / "a" / "csv").glob("*/metrics.csv")  # logged once per epoch, to every logger
    rows = list(csv.DictReader(logged.open()))
    assert [float(row["schedule/epsilon"]) for row in rows if row.get("schedule/epsilon")] == [0.0, 0.0]


def test_two_stage_past_the_last_epoch_trains_as_the_strategy_itself(tmp_path: Path) -> None:
    scheduled = trained(
        tmp_path, "a", ["smoothing=focal", "strategy_schedule=two_stage", "strategy_schedule.until_epoch=2"]
    )
    assert_same_training(scheduled, trained(tmp_path, "b", ["smoothing=focal"]))
    assert scheduled[0]["strategy_schedule.values"] == [3.0, 3.0]


def test_two_stage_switches_mid_run(tmp_path: Path) -> None:
    overrides = ["smoothing=uniform", "strategy_schedule=two_stage", "strategy_schedule.until_epoch=1"]
    metrics, weights = trained(tmp_path, "a", overrides)
    assert metrics["strategy_schedule.values"] == [0.1, 0.0]
    assert metrics["strategy_schedule.until_epoch"] == 1
    # The final validation and test ran on the best checkpoint, with the value its epoch trained with.
    assert metrics["strategy_schedule.evaluated_value"] == [0.1, 0.0][metrics["val/acc_best_epoch"]]
    unsmoothed = trained(tmp_path, "b", ["smoothing=uniform", "smoothing.epsilon=0.0"])[1]
    assert any(not torch.equal(weights[k], unsmoothed[k]) for k in weights)


@pytest.mark.parametrize("option", ["two_stage", "linear", "cosine"])
def test_a_schedule_is_a_callback_also_without_the_default_callbacks(tmp_path: Path, option: str) -> None:
    """The schedule is part of the training recipe: ``callbacks=none`` must not drop it."""
    assert compose_train_config([], output_dir=tmp_path).strategy_schedule is None
    for callbacks in ("default", "none"):
        until = ["strategy_schedule.until_epoch=1"] if option == "two_stage" else []
        cfg = compose_train_config(
            [f"callbacks={callbacks}", f"strategy_schedule={option}", *until], output_dir=tmp_path
        )
        schedule = hydra.utils.instantiate(cfg.callbacks.strategy_schedule)
        assert schedule.kind == option, callbacks


def test_a_resumed_run_continues_the_schedule_exactly(tmp_path: Path) -> None:
    overrides = ["smoothing=uniform", "smoothing.epsilon=0.3", "strategy_schedule=linear", "trainer.max_epochs=3"]
    reference = trained(tmp_path, "a", overrides)
    assert reference[0]["strategy_schedule.values"] == pytest.approx([0.3, 0.15, 0.0])
    first = run_training(tmp_path / "b", [*QUICK, *overrides, "+trainer.max_steps=6"])  # stops after 2 epochs
    assert first["epochs"] == 2 and first["strategy_schedule.values"] == pytest.approx([0.3, 0.15])
    checkpoint = RunDirectory(tmp_path / "b").last_checkpoint
    resumed = trained(tmp_path, "c", [*overrides, f"ckpt_path={checkpoint}"])
    assert_same_training(resumed, reference)
    assert resumed[0]["strategy_schedule.values"] == reference[0]["strategy_schedule.values"]


def test_a_checkpoint_is_evaluated_and_loaded_with_the_scheduled_value_it_trained_with(tmp_path: Path) -> None:
    """LogitNorm's temperature shapes its predictions: ``eval.py`` and ``load_from_checkpoint`` built the strategy
    with the configured value (0.04) instead of the scheduled one (0.2), and reported another ECE."""
    from labelsmooth import LabelSmoothingClassifier
    from tests.conftest import run_app

    overrides = ["smoothing=logit_norm", "strategy_schedule=linear", "strategy_schedule.start=0.3"]
    overrides += ["strategy_schedule.end=0.2"]  # every epoch trains with another value than the configured 0.04
    metrics, _ = trained(tmp_path, "run", overrides)
    evaluated_value = metrics["strategy_schedule.evaluated_value"]
    assert evaluated_value != pytest.approx(0.04)
    checkpoint = metrics["checkpoint"]
    model = LabelSmoothingClassifier.load_from_checkpoint(checkpoint)
    assert model.criterion.temperature == pytest.approx(evaluated_value)
    args = [f"ckpt_path={checkpoint}", "logger=none", "figures=false", f"hydra.run.dir={tmp_path / 'eval'}"]
    assert run_app(args, tmp_path, script="eval.py").returncode == 0
    evaluation = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for key in ("test/acc", "test/ece", "test/nll", "val/confidence"):
        assert evaluation[key] == pytest.approx(metrics[key], abs=1e-6), key

"""Fused sweeps (``hydra/launcher=fused``): a member trains the model its job trains alone, and each member is a
complete run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelsmooth.cli.build import compose_config, strategy_before_data
from labelsmooth.cli.fused import Member, train_group
from labelsmooth.cli.fused_groups import Job
from labelsmooth.cli.train import train
from labelsmooth.runs.context import RunContext
from tests.conftest import choices_of
from tests.fused_helpers import StepLosses

QUIET = ["logger=none", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false"]
# Three members that differ in strategy, seed and batch mixing, with random shifts and flips in the data: every
# per-member draw (initialisation, shuffle, augmentation, mixing) is exercised.
MEMBERS = [
    ["smoothing=none", "seed=0"],
    ["smoothing=uniform", "seed=1", "augment=mixup"],
    ["smoothing=gamma", "smoothing.gamma=0.8", "seed=2"],
]
SHARED = ["trainer.max_epochs=3", "dataset.shift=0.1", "dataset.hflip=true", *QUIET]
MODELS = {
    "mlp": ["model=mlp"],
    "resnet_v1": ["model=resnet_v1"],
    "timm": ["model=timm", "model.name=resnet10t"],
}


def fused_members(tmp_path: Path, model: list[str]) -> list[Member]:
    members = []
    for number, overrides in enumerate(MEMBERS):
        job_overrides = [*model, *SHARED, *overrides]
        directory = tmp_path / "fused" / str(number)
        cfg = compose_config(job_overrides, output_dir=directory)
        context = RunContext(output_dir=directory, choices=choices_of(job_overrides), multirun=True)
        member = Member(Job(number, job_overrides, cfg), list(range(len(MEMBERS))), cfg, context)
        member.strategy = strategy_before_data(cfg)
        members.append(member)
    return members


def train_alone(tmp_path: Path, overrides: list[str]) -> tuple[dict, list[float]]:
    """The job trained alone (``train``), with the loss of each of its training steps."""
    losses = tmp_path / "alone-losses.json"
    overrides = [
        *overrides,
        "+callbacks.step_losses._target_=tests.fused_helpers.StepLosses",
        f"+callbacks.step_losses.path={losses}",
    ]
    cfg = compose_config(overrides, output_dir=tmp_path / "alone")
    summary = train(cfg, RunContext(output_dir=tmp_path / "alone", choices=choices_of(overrides)))
    return summary, json.loads(losses.read_text())


@pytest.mark.parametrize(
    ("model", "batching", "member"),
    [("mlp", "loop", 2), ("resnet_v1", "loop", 1), ("timm", "loop", 1), ("mlp", "vmap", 1)],
)
def test_a_member_trains_the_model_its_job_trains_alone(tmp_path: Path, model: str, batching: str, member: int) -> None:
    """The same initial weights and batches: the first 50 training losses equal to 1e-5 relative (``loop``:
    bit for bit), and after 3 epochs the best validation accuracy within one example of the separate run's."""
    members = fused_members(tmp_path, MODELS[model])
    recorder = StepLosses()
    train_group(list(members), tmp_path / "group", batching, callbacks=[recorder])
    assert all(member.error is None for member in members)

    alone, separate = train_alone(tmp_path, [*MODELS[model], *SHARED, *MEMBERS[member]])
    fused = [step[member] for step in recorder.losses]
    assert len(fused) == len(separate) >= 50
    for step, (ours, theirs) in enumerate(zip(fused[:50], separate[:50], strict=True)):
        assert ours == pytest.approx(theirs, rel=1e-5), f"step {step}"
    if batching == "loop":
        assert fused == separate
    validation_size = 269
    best = max(values["val/acc"] for values in members[member].history)
    assert abs(best - alone["val/acc_best"]) * validation_size <= 1 + 1e-6

"""Fused sweeps (``hydra/launcher=fused``): a member trains the model its job trains alone, and each member is a
complete run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from labelsmooth.cli.build import strategy_before_data
from labelsmooth.cli.fused import Member, train_group
from labelsmooth.cli.fused_groups import Job, group_jobs, keys_that_split, why_not_fusable
from labelsmooth.cli.train import train
from labelsmooth.fused.classifier import MemberFailed
from labelsmooth.runs.context import RunContext
from labelsmooth.runs.history import read_history_csv
from tests.conftest import choices_of, compose_train_config
from tests.fused_helpers import StepLosses

QUIET = ["logger=none", "figures=false", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false"]
# Members that differ in strategy, seed, batch mixing and strategy schedule, with random shifts and flips in the
# data: every per-member draw (initialisation, shuffle, augmentation, mixing) is exercised.
MEMBERS = [
    ["smoothing=none", "seed=0"],
    ["smoothing=uniform", "seed=1", "augment=mixup"],
    ["smoothing=gamma", "smoothing.gamma=0.8", "seed=2"],
    ["smoothing=uniform", "seed=3", "strategy_schedule=linear"],  # ε from 0.1 to 0 over the epochs
]
SHARED = ["trainer.max_epochs=3", "dataset.shift=0.1", "dataset.hflip=true", *QUIET]
MODELS = {
    "mlp": ["model=mlp"],
    "resnet_v1": ["model=resnet_v1"],
    "timm": ["model=timm", "model.name=test_resnet"],  # timm's own small ResNet (BatchNorm) for tests
    "mlp bf16-mixed": ["model=mlp", "trainer.precision=bf16-mixed"],  # the shifts are computed outside autocast
    # clipping by value is elementwise: the group's Trainer clips each member's gradients as its run clips them
    # ranked by a value the run computes as a Python float (the temperature-scaled NLL), which its self.log stores
    # in float32: the member's history and ranking read those numbers
    "mlp ranked by val/nll_ts": [
        "model=mlp",
        "callbacks.checkpoint.monitor=val/nll_ts",
        "callbacks.checkpoint.mode=min",
    ],
    "mlp clipped by value": ["model=mlp", "+trainer.gradient_clip_val=0.02", "+trainer.gradient_clip_algorithm=value"],
}


def fused_members(tmp_path: Path, model: list[str], grid: list[list[str]] = MEMBERS) -> list[Member]:
    members = []
    for number, overrides in enumerate(grid):
        job_overrides = [*model, *SHARED, *overrides]
        directory = tmp_path / "fused" / str(number)
        cfg = compose_train_config(job_overrides, output_dir=directory)
        context = RunContext(output_dir=directory, choices=choices_of(job_overrides), multirun=True)
        member = Member(Job(number, job_overrides, cfg), list(range(len(grid))), cfg, context)
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
    cfg = compose_train_config(overrides, output_dir=tmp_path / "alone")
    summary = train(cfg, RunContext(output_dir=tmp_path / "alone", choices=choices_of(overrides)))
    return summary, json.loads(losses.read_text())


@pytest.mark.parametrize(
    ("model", "batching", "member"),
    [
        ("mlp", "loop", 2),
        ("mlp ranked by val/nll_ts", "loop", 3),
        ("resnet_v1", "loop", 1),
        ("timm", "loop", 1),
        ("mlp", "vmap", 1),
    ]
    + [("mlp bf16-mixed", "loop", 0), ("mlp clipped by value", "loop", 1)],
)
def test_a_member_trains_the_model_its_job_trains_alone(tmp_path: Path, model: str, batching: str, member: int) -> None:
    """The same initial weights and batches: the first 50 training losses equal to 1e-5 relative (``loop``:
    bit for bit; ``vmap``: 5e-5, its batched kernels round differently, and by how much depends on the process,
    1.8e-5 by step 30 after a timm test in the same pytest-xdist worker), and after 3 epochs the best validation
    accuracy within one example of the separate run's."""
    members = fused_members(tmp_path, MODELS[model])
    recorder = StepLosses()
    train_group(list(members), tmp_path / "group", batching, callbacks=[recorder])
    assert all(member.error is None for member in members)

    alone, separate = train_alone(tmp_path, [*MODELS[model], *SHARED, *MEMBERS[member]])
    fused = [step[member] for step in recorder.losses]
    assert len(fused) == len(separate) >= 50
    for step, (ours, theirs) in enumerate(zip(fused[:50], separate[:50], strict=True)):
        assert ours == pytest.approx(theirs, rel=1e-5 if batching == "loop" else 5e-5), f"step {step}"
    if batching == "loop":
        assert fused == separate
        history = read_history_csv(tmp_path / "alone" / "history.csv")
        rows = zip(members[member].history, history, strict=True)
        assert [{key: row[key] for key in alone_row} for row, alone_row in rows] == history
    validation_size = 269
    best = max(values["val/acc"] for values in members[member].history)
    assert abs(best - alone["val/acc_best"]) * validation_size <= 1 + 1e-6
    if "strategy_schedule=linear" in MEMBERS[member]:
        applied = [values["schedule/epsilon"] for values in members[member].history]
        assert alone["strategy_schedule.values"] == [0.1, 0.05, 0.0]
        assert applied == [torch.tensor(value).item() for value in [0.1, 0.05, 0.0]]  # as its run logs them


def composed(overrides: list[str], number: int, tmp_path: Path) -> Job:
    return Job(number, overrides, compose_train_config(overrides, output_dir=tmp_path))


def test_jobs_fuse_when_they_differ_only_in_what_is_exact_per_member(tmp_path: Path) -> None:
    grid = [
        ["smoothing=none", "seed=0"],
        ["smoothing=gamma", "smoothing.gamma=0.8", "seed=1", "augment=mixup"],
        ["smoothing=uniform", "seed=2", "model=mlp"],  # another model: another group
        ["smoothing=uniform", "seed=3"],
        ["smoothing=uniform", "seed=4", "precise_bn=2"],  # cannot be a member: runs alone
        ["smoothing=none", "seed=5", "tags=[five]"],  # W&B tags are each member's own
        ["smoothing=none", "seed=6", "dataset.split_seed=${seed}"],  # another split for each seed: its own group
        ["smoothing=none", "seed=7", "dataset.split_seed=${seed}"],
    ]
    jobs = [composed(overrides, number, tmp_path) for number, overrides in enumerate(grid)]
    groups = group_jobs(jobs, max_members=None)
    assert [[job.number for job in group.jobs] for group in groups] == [[0, 1, 3, 5], [2], [4], [6], [7]]
    assert [group.reason is None for group in groups] == [True, False, False, False, False]
    assert "precise_bn" in groups[2].describe() and groups[0].describe() == "#0, #1, #3, #5: fused, 4 members"
    assert keys_that_split(groups) == ["dataset.split_seed", "model"]  # printed with the grouping
    assert keys_that_split(group_jobs([jobs[0], jobs[1]], max_members=None)) == []
    epochs = [(1, 0), (1, 1), (2, 0), (2, 1)]
    grid = [composed([f"trainer.max_epochs={e}", f"seed={s}"], n, tmp_path) for n, (e, s) in enumerate(epochs)]
    assert keys_that_split(group_jobs(grid, max_members=None)) == ["trainer.max_epochs"]  # not T_max, which follows
    lrs = [(0.001, 0), (0.001, 1), (0.002, 0), (0.002, 1)]  # every job splits by seed too, once resolved
    grid = [[f"optimizer.lr={lr}", f"seed={s}", "dataset.split_seed=${seed}"] for lr, s in lrs]
    grid = [composed(overrides, n, tmp_path) for n, overrides in enumerate(grid)]
    assert keys_that_split(group_jobs(grid, max_members=None)) == ["dataset.split_seed", "optimizer.lr"]
    capped = group_jobs(jobs, max_members=2)
    assert [[job.number for job in group.jobs] for group in capped] == [[0, 1], [2], [3, 5], [4], [6], [7]]
    capped = group_jobs(jobs, max_members=3)
    assert [[job.number for job in group.jobs] for group in capped] == [[0, 1, 3], [2], [4], [5], [6], [7]]
    assert capped[3].describe() == "#5: alone (hydra.launcher.max_members=3)"
    assert capped[1].describe() == "#2: alone (the only job of its group)"


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("trainer.devices=2", "one device"),
        ("+trainer.gradient_clip_val=1.0", "clipping by norm is not fused"),  # Lightning's default algorithm
        ("resume=true", "resume"),
        ("dataset._target_=labelsmooth.data.base.ClassificationDataModule", "not a labelsmooth.data.ImageDataModule"),
        # a callback the group would not run: the members trained 6 epochs where their runs stopped after 2
        ("+callbacks.stop={_target_:pytorch_lightning.callbacks.EarlyStopping,monitor:val/acc}", "EarlyStopping) is"),
        ("callbacks.checkpoint.save_top_k=2", "callbacks.checkpoint.save_top_k=2: a fused member keeps its best"),
        ("+trainer.val_check_interval=0.5", "validates once per epoch"),  # its history had three rows per epoch
        ("optimizer._target_=torch.optim.Adafactor", "not elementwise"),  # losses 2e-4 from the separate runs'
        ("+trainer.overfit_batches=2", "turns off the shuffling"),  # test/acc 0.487 where the run alone had 0.674
        ("+trainer.max_time=00:00:10:00", "shared by its members"),
        # timm's factory: LAMB's per-tensor trust ratio mixed the members (val/acc 0.918 where the run had 0.911)
        ("optimizer._target_=timm.optim.create_optimizer_v2", "not an optimizer class"),
        ("+trainer.fast_dev_run=true", "writes no checkpoints"),
        ("+callbacks.lr_monitor.log_momentum=true", "not momentum or weight decay"),
        ("callbacks.precise_bn.num_batches=5", "precise BatchNorm statistics"),  # the callback's own, not the key's
        ("callbacks.lr_monitor.logging_interval=step", "learning rates per epoch"),
        # with no scheduler, its run logged the rates every log_every_n_steps steps
        ("callbacks.lr_monitor.logging_interval=null", "learning rates per epoch"),
        # a loader that keeps its workers draws its validation order once: the members drifted from epoch 1
        ("dataset=imagenette", "DataLoader workers kept between epochs"),
    ],
)
def test_jobs_that_cannot_be_members_say_why(tmp_path: Path, override: str, reason: str) -> None:
    config = compose_train_config([override], output_dir=tmp_path)
    assert reason in why_not_fusable(config)
    assert why_not_fusable(compose_train_config([], output_dir=tmp_path)) is None


@pytest.mark.parametrize(
    "override",
    [
        "+callbacks.watch={_target_:labelsmooth.callbacks.Observer}",  # a callback that only records
        "callbacks.checkpoint.save_top_k=0",  # last.ckpt alone, as a member writes it
        "callbacks=none",  # no checkpoint written by a member (its run writes Lightning's default one); same numbers
        "+trainer.gradient_clip_val=0.02 +trainer.gradient_clip_algorithm=value",  # elementwise: each member's own
    ],
)
def test_jobs_with_what_a_group_reproduces_are_members(tmp_path: Path, override: str) -> None:
    assert why_not_fusable(compose_train_config(override.split(" "), output_dir=tmp_path)) is None


@pytest.mark.parametrize(
    ("override", "records"),
    [(None, (True, True)), ("callbacks=none", (False, False)), ("callbacks.lr_monitor=null", (True, False))],
)
def test_a_member_records_the_epochs_and_rates_its_run_records(tmp_path: Path, override, records) -> None:
    """A member wrote history.csv and its epoch lines, and logged learning rates, where its run alone (without the
    epoch log, or the learning-rate monitor) writes and logs none."""
    from labelsmooth.cli.fused_completion import callbacks_of_its_run

    assert callbacks_of_its_run(compose_train_config([override] if override else [], output_dir=tmp_path)) == records


def test_a_network_that_draws_random_numbers_is_not_fused() -> None:
    import torch

    from labelsmooth.fused import NotFusable, check_fusable
    from labelsmooth.models import MLP, ResNetV2

    networks = [MLP(num_classes=3, in_channels=1, image_size=4, hidden_sizes=[8], dropout=0.5) for _ in range(2)]
    for batching in ("loop", "vmap"):
        with pytest.raises(NotFusable, match="draws random numbers"):
            check_fusable(networks, torch.randn(4, 1, 4, 4), batching)
    check_fusable(
        [MLP(num_classes=3, in_channels=1, image_size=4, hidden_sizes=[8]) for _ in range(2)], torch.randn(4, 1, 4, 4)
    )
    v2 = [ResNetV2(num_classes=3, in_channels=1, image_size=8, depth=11) for _ in range(2)]  # pre-activation
    for batching in ("loop", "vmap"):
        check_fusable(v2, torch.randn(4, 1, 8, 8), batching)


def test_a_strategy_with_parameters_of_its_own_is_not_fused(tmp_path: Path) -> None:
    """The group's optimizer steps the stacked networks: a strategy's own parameter would not be trained."""
    from labelsmooth.fused import NotFusable

    learned = "smoothing._target_=tests.fused_helpers.LearnedScaleSmoothing"
    members = fused_members(tmp_path, MODELS["mlp"], [["smoothing=uniform", "seed=0"], ["smoothing=uniform", learned]])
    with pytest.raises(NotFusable, match="parameters of its own"):
        train_group(members, tmp_path / ".fused")


def test_a_group_larger_than_memory_is_split() -> None:
    import torch
    from torch import nn

    from labelsmooth.cli.fused_groups import members_that_fit

    class Module(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.net = nn.Linear(width, width, device="meta")  # sized, never allocated

    small = [Module(16) for _ in range(9)]
    assert members_that_fit(small, torch.device("cpu"))[0] == 9
    huge = [Module(200_000) for _ in range(9)]  # 160 GB of weights each
    size, why = members_that_fit(huge, torch.device("cpu"))
    assert size == 1 and "MiB per member" in why


def test_a_members_best_checkpoint_is_ranked_as_lightning_ranks_a_runs(tmp_path: Path) -> None:
    """Without a monitor the newest checkpoint is the best (a run alone keeps best-epoch<n>.ckpt); a NaN score is
    the worst, so a later finite one replaces it."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from labelsmooth.fused.checkpoints import MemberCheckpoints, ranked_score

    newest = MemberCheckpoints(ModelCheckpoint(dirpath=tmp_path, monitor=None))
    assert newest._improves(None)
    by_nll = MemberCheckpoints(ModelCheckpoint(dirpath=tmp_path, monitor="val/nll", mode="min"))
    assert by_nll._improves(ranked_score(float("nan"), "min"))  # the first validation's, then
    by_nll.best_score = ranked_score(float("nan"), "min")
    assert by_nll._improves(1.0) and not by_nll._improves(None)
    assert ranked_score(float("nan"), "max") == float("-inf") and ranked_score(0.5, "max") == 0.5


class OverflowAtTheEpochsEnd(pl.Callback):
    """Sets members' weights to inf after the last training step of the first epoch, whose loss was finite: an
    update that overflowed, which only the weights show before validation writes checkpoints."""

    def __init__(self, members: list[int]) -> None:
        self.members = members

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, index) -> None:
        if trainer.current_epoch == 0 and index + 1 == trainer.num_training_batches:
            with torch.no_grad():
                for weights in module.stacked.stacked_parameters.values():
                    weights[self.members] = float("inf")


def test_members_stop_as_the_guard_of_their_runs_stops_them(tmp_path: Path) -> None:
    """Weights that overflowed with a finite loss stop a member before its validation, as NonFiniteLossGuard stops
    its run; the others go on, and the fit ends when none is left. Without the guard (callbacks.nan_guard=null) a
    member whose loss is NaN trains on to the end, as its run alone does; without checkpoints
    (trainer.enable_checkpointing=false) the group still keeps its own."""
    grid = [["smoothing=none", "seed=0"], ["smoothing=uniform", "seed=1"]]
    members = fused_members(tmp_path / "one", MODELS["mlp"], grid)
    train_group(members, tmp_path / "one" / ".fused", callbacks=[OverflowAtTheEpochsEnd([1])])
    assert members[0].error is None and len(members[0].history) == 3
    assert "the weights became non-finite by global step 18 (epoch 0)" in str(members[1].error)
    assert members[1].history == []  # stopped before its first validation: no epoch recorded, no checkpoint
    assert not (tmp_path / "one" / "fused" / "1" / "checkpoints").exists()

    members = fused_members(tmp_path / "all", MODELS["mlp"], grid)
    train_group(members, tmp_path / "all" / ".fused", callbacks=[OverflowAtTheEpochsEnd([0, 1])])
    assert all(isinstance(member.error, MemberFailed) for member in members)
    assert [member.epochs for member in members] == [1, 1]  # of trainer.max_epochs=3

    nan_loss = [["smoothing=logit_norm", "smoothing.temperature=1e-40", "seed=0"], ["smoothing=none", "seed=1"]]
    settings = ["callbacks.nan_guard=null", "+trainer.enable_checkpointing=false", "callbacks.checkpoint=null"]
    members = fused_members(tmp_path / "unguarded", [*MODELS["mlp"], *settings], nan_loss)
    train_group(members, tmp_path / "unguarded" / ".fused")
    assert [member.error for member in members] == [None, None] and len(members[0].history) == 3
    assert [member.best for member in members] == ["", ""] and (
        tmp_path / "unguarded" / ".fused" / "last.ckpt"
    ).exists()
    assert math.isnan(members[0].history[0]["train/loss"])


class FailsInSecondEpoch(pl.Callback):
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("a bug in the second epoch")


class InterruptedInSecondEpoch(pl.Callback):
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt  # Ctrl-C: Lightning ends the fit with SystemExit(1)


@pytest.mark.parametrize(
    ("stop", "raised"), [(FailsInSecondEpoch, RuntimeError), (InterruptedInSecondEpoch, SystemExit)]
)
def test_a_group_whose_fit_fails_leaves_each_member_the_epochs_it_trained(tmp_path: Path, stop, raised) -> None:
    """A run whose fit fails or is interrupted keeps its first epochs in its logger, ``train.log`` and
    ``history.csv``; so does each member of such a group (they had none)."""
    import signal

    members = fused_members(tmp_path, MODELS["mlp"], MEMBERS[:2])
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(raised):
            train_group(list(members), tmp_path / "group", callbacks=[stop()])
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores Ctrl-C once it has seen one
    for member in members:
        assert [row["epoch"] for row in member.history] == [0] and "val/acc" in member.history[0]
        assert member.module is not None and isinstance(member.error, raised)

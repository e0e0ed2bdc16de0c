"""``python train.py -m hydra/launcher=fused`` as users run it: each member writes what its job writes under the
basic launcher, a member that fails stops alone, and an interrupted group continues with ``resume_sweep=true``."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from labelsmooth.runs.history import read_history_csv
from labelsmooth.tracking.wandb_run import sweep_group_name
from tests.conftest import REPO_ROOT, lock_held_by_another_process, metrics_of, run_app_in_process, subprocess_env
from tests.wandb_records import offline_run_of

QUIET = ["trainer.enable_progress_bar=false"]
# Members that differ in strategy schedule (ε from 0.1 to 0, or constant); tests/test_fused.py trains members that
# differ in seed, strategy and batch mixing too.
GRID = ["smoothing=uniform", "strategy_schedule=none,linear", "seed=1", "model=mlp", "trainer.max_epochs=2", *QUIET]


def files_of(job: Path) -> set[str]:
    skipped = ("wandb", ".wandb-data", "csv")  # W&B's run and its staged copies: random names
    return {
        str(p.relative_to(job)) for p in job.rglob("*") if p.is_file() and p.relative_to(job).parts[0] not in skipped
    }


def log_lines(job: Path, sweep: Path) -> list[tuple[str, str, str]]:
    """Each line of the job's ``train.log`` as its logger, level and message, in the order of the lines sorted,
    with the sweep's directory left out and an epoch line's timing too (a fused member's epoch is the group's)."""
    lines = []
    for line in (job / "train.log").read_text().splitlines():
        logger, level, message = re.fullmatch(r"\[[^]]*\]\[([^]]*)\]\[(\w+)\] - (.*)", line).groups()
        message = re.sub(r"done( \(fused group\))?: (\d+) steps( in \S+ s)?;", r"done: \2 steps;", message)
        lines.append((logger, level, message.replace(str(sweep), "<sweep>")))
    return sorted(lines)


def wandb_rows(page) -> list[tuple[list[str], int | None, float | None]]:
    """Each W&B history row's keys and step, and the epoch of the rows that the run logs with one (its learning
    rates, validation and training values)."""
    rows = []
    for row in page.history:
        keys = sorted(key for key in row if not key.startswith("_") and key != "epoch")
        epoch = row.get("epoch") if any(k in row for k in ("val/acc", "train/loss", "lr-Adam")) else None
        rows.append((keys, row.get("trainer/global_step"), epoch))
    return rows


@pytest.mark.slow
def test_each_member_of_a_fused_sweep_is_the_complete_run_of_its_job(tmp_path: Path) -> None:
    fused, basic = tmp_path / "fused", tmp_path / "basic"
    result = run_app_in_process(["-m", *GRID, "hydra/launcher=fused", f"hydra.sweep.dir={fused}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Fused launcher: 2 jobs in 1 group" in output and "#0, #1: fused, 2 members" in output
    assert not (fused / ".fused").exists()  # the group checkpoint, resume state only, once every member completed
    result = run_app_in_process(["-m", *GRID, f"hydra.sweep.dir={basic}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    ours, theirs = metrics_of(fused), metrics_of(basic)
    assert sorted(ours) == sorted(theirs) == [0, 1]
    for number in ours:
        member, alone = ours[number], theirs[number]
        assert member.pop("fused_group") == [0, 1]
        assert set(member) == set(alone)
        assert member["status"] == "completed" and member["overrides"] == alone["overrides"]
        for key, value in alone.items():  # loop batching: the same numbers, bit for bit
            if key != "checkpoint" and not key.startswith("wandb."):  # a path; another W&B run
                assert member[key] == value, key
        job, other = fused / str(number), basic / str(number)
        assert files_of(job) == files_of(other)  # .hydra/, checkpoints, predictions, figures, train.log
        curve, alone_curve = read_history_csv(job / "history.csv"), read_history_csv(other / "history.csv")
        assert curve == alone_curve and len(curve) == 2  # the training curve, a strategy schedule's value included
        assert (job / "checkpoints" / "last.ckpt").exists() and member["checkpoint"].startswith(str(job))
        log = (job / "train.log").read_text()
        assert "epoch 0 done (fused group): 19 steps; lr-Adam=0.001, " in log and "epoch 1 done" in log
        assert ("schedule/epsilon=0.1, " in log) == (alone["strategy_schedule"] == "linear")
        # the lines of its job's log: its seed, its data set, its epochs' values, why its fit stopped, its test
        assert log_lines(job, fused) == log_lines(other, basic)
        page = offline_run_of(job)  # its own W&B run in the sweep's group, with its epoch history
        assert page.exit_code == 0 and page.group == sweep_group_name(str(fused)) and page.job_type == "train"
        assert [row["epoch"] for row in page.history if "train/loss" in row] == [0, 1]
        assert page.summary["val/acc_best"] == {"max": member["val/acc_best"]}
        # the final test at the run's last epoch and step (a member's fresh Trainer logged it at epoch 0, step 0)
        tested = [[row.get(k) for k in ("epoch", "trainer/global_step")] for row in page.history if "test/acc" in row]
        alone_page = offline_run_of(other)
        assert tested == [[row.get(k) for k in ("epoch", "trainer/global_step")]
                          for row in alone_page.history if "test/acc" in row] == [[2, 2 * 19]]  # fmt: skip
        # Every row at its run's step: the learning rate at the epoch's start, validation and training values at
        # its last step. W&B adds the last epoch to a row that lacks it when its timing allows: not compared.
        assert wandb_rows(page) == wandb_rows(alone_page)

    # A member's checkpoint alone, copied elsewhere, is evaluated from what it carries.
    copied = tmp_path / "elsewhere" / "model.ckpt"
    copied.parent.mkdir()
    shutil.copy(ours[1]["checkpoint"], copied)
    evaluation = [f"ckpt_path={copied}", "logger=none", f"paths.log_dir={tmp_path / 'evaluated'}", *QUIET]
    result = run_app_in_process(evaluation, tmp_path, script="eval.py")
    assert result.returncode == 0, result.stderr[-3000:]
    (evaluated,) = (tmp_path / "evaluated").rglob("metrics.json")
    assert json.loads(evaluated.read_text())["test/acc"] == ours[1]["test/acc"]

    report = run_app_in_process([str(fused)], tmp_path, script="report.py")
    assert report.returncode == 0, report.stderr[-3000:]
    assert "None: every job completed." in (fused / "report.md").read_text()


@pytest.mark.slow
def test_a_member_that_fails_stops_alone_and_records_what_its_run_alone_records(tmp_path: Path) -> None:
    """Temperature 1 scheduled to 0.04 trains; to 1e-40, the loss becomes NaN in epoch 2 (after 2 epochs of
    history); temperature -1 is refused before any data is read. The basic launcher's jobs are the reference."""
    grid = ["smoothing=logit_norm", "smoothing.temperature=1,-1", "strategy_schedule=linear"]
    grid += ["strategy_schedule.end=0.04,1e-40", "model=mlp", "trainer.max_epochs=3", "num_threads=1", *QUIET]
    fused, basic = tmp_path / "fused", tmp_path / "basic"
    result = run_app_in_process(["-m", *grid, "hydra/launcher=fused", f"hydra.sweep.dir={fused}"], tmp_path)
    assert result.returncode == 1  # as under the basic launcher: a sweep with a failed job
    output = result.stdout + result.stderr
    assert "#0, #1, #2, #3: fused, 4 members" in output and "#2 refused, #3 refused: #0, #1 train" in output
    assert run_app_in_process(["-m", *grid, f"hydra.sweep.dir={basic}"], tmp_path).returncode == 1
    ours, theirs = metrics_of(fused), metrics_of(basic)
    assert ours[0]["status"] == "completed" and ours[0]["test/acc"] > 0.5
    assert ours[1]["status"] == "failed" and ours[1]["error_type"] == "MemberFailed"
    assert "the training loss became nan at global step 38 (epoch 2" in ours[1]["error"]  # its first step
    assert ours[2]["status"] == ours[3]["status"] == "failed" and "smoothing.temperature" in ours[2]["error"]
    assert [ours[n].pop("fused_group") for n in range(4)] == [[0, 1], [0, 1], [], []]
    for number in range(4):  # the same record: a refused job has no thread count, a failed one its W&B run
        assert set(ours[number]) == set(theirs[number]), number
        assert ours[number]["status"] == theirs[number]["status"]
        page, alone_page = offline_run_of(fused / str(number)), offline_run_of(basic / str(number))
        assert page.exit_code == alone_page.exit_code == (0 if number == 0 else 1)
        epochs = [[row["epoch"] for row in p.history if "train/loss" in row] for p in (page, alone_page)]
        assert epochs[0] == epochs[1] == ([0, 1, 2] if number == 0 else [0, 1] if number == 1 else [])
        if number < 2:  # also the learning rates of the epoch it failed in, logged at the epoch's start
            assert wandb_rows(page) == wandb_rows(alone_page), number
        logs = [(d / str(number) / "train.log").read_text() for d in (fused, basic)]
        assert [log.count("epoch 1 done") for log in logs] == [number < 2] * 2
    assert (fused / "1" / "checkpoints" / "last.ckpt").exists()  # its epochs before the NaN, as its run's
    assert (fused / ".fused" / "0-1" / "last.ckpt").exists()  # a member failed: the group keeps its checkpoint
    assert "every member completed" not in (fused / "1" / "train.log").read_text()  # the launcher's own lines


@pytest.mark.slow
def test_an_interrupted_fused_group_continues_to_the_uninterrupted_result(tmp_path: Path) -> None:
    grid = ["smoothing=uniform", "smoothing.epsilon=0.0,0.2", "trainer.max_epochs=4", *QUIET, "logger=csv"]
    grid += ["figures=false"]  # the numbers are compared, not the figures
    grid += ["num_threads=1"]  # compared bit for bit across processes: CPU sums depend on the thread count
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    result = run_app_in_process(["-m", *grid, "hydra/launcher=fused", f"hydra.sweep.dir={whole}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    command = [sys.executable, str(REPO_ROOT / "train.py"), "-m", *grid, "hydra/launcher=fused"]
    process = subprocess.Popen(
        [*command, f"hydra.sweep.dir={killed}"],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    group_checkpoint = killed / ".fused" / "0-1" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not group_checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert group_checkpoint.exists() and not metrics_of(killed)  # killed during the group's fit
    torch.load(group_checkpoint, map_location="cpu", weights_only=True)  # plain values, as a run's checkpoint
    for copy in ("moved", "other", "changed"):
        shutil.copytree(killed, tmp_path / copy, symlinks=True)
    originals = {p: p.read_bytes() for p in killed.glob("*/checkpoints/*")}

    moved = tmp_path / "moved"  # a copy of the sweep directory continues with its own best checkpoints
    result = run_app_in_process(
        ["-m", *grid, "hydra/launcher=fused", f"hydra.sweep.dir={moved}", "resume_sweep=true"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the fused group 0-1 continues from" in result.stdout + result.stderr
    resumed, uninterrupted = metrics_of(moved), metrics_of(whole)
    for number in (0, 1):
        for key in ("val/acc", "val/acc_best", "val/acc_best_epoch", "val/nll", "test/acc", "test/nll", "epochs"):
            assert resumed[number][key] == uninterrupted[number][key], (number, key)
        assert resumed[number]["checkpoint"].startswith(str(moved / str(number) / "checkpoints"))
        curve = (moved / str(number) / "history.csv").read_text()  # every epoch's row, before and after the kill
        assert curve == (whole / str(number) / "history.csv").read_text() and curve.count("\n") == 1 + 4

    hydra_files = {p: p.read_bytes() for p in moved.glob("*/.hydra/*.yaml")}
    elsewhere = tmp_path / "elsewhere"  # another working directory: Hydra's record of this command differs
    elsewhere.mkdir()
    result = run_app_in_process(
        ["-m", *grid, "hydra/launcher=fused", f"hydra.sweep.dir={moved}", "resume_sweep=true"], elsewhere
    )
    assert result.returncode == 0 and "test accuracy" not in result.stdout  # completed members are skipped
    assert {p: p.read_bytes() for p in moved.glob("*/.hydra/*.yaml")} == hydra_files  # their runs' own
    assert "#0 completed earlier, #1 completed earlier: none train" in result.stdout + result.stderr
    assert {p: p.read_bytes() for p in killed.glob("*/checkpoints/*")} == originals  # the original untouched

    # Another grid into the interrupted sweep's directory, without resume_sweep: refused before any job, the
    # members' and the group's checkpoints kept; with the members' directories moved away, the group starts afresh.
    other = tmp_path / "other"
    other_grid = [*(o.replace("0.0,0.2", "0.1,0.3") for o in grid), "trainer.max_epochs=1"]
    kept = {path: path.read_bytes() for path in other.rglob("*.ckpt")}
    result = run_app_in_process(["-m", *other_grid, "hydra/launcher=fused", f"hydra.sweep.dir={other}"], tmp_path)
    assert result.returncode == 1 and "holds the jobs of an earlier sweep" in result.stderr
    assert {path: path.read_bytes() for path in kept} == kept and len(kept) > 2
    for job in ("0", "1"):
        shutil.rmtree(other / job)
    result = run_app_in_process(["-m", *other_grid, "hydra/launcher=fused", f"hydra.sweep.dir={other}"], tmp_path)
    assert result.returncode == 0 and "continues from" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert [(m["smoothing.epsilon"], m["epochs"]) for m in metrics_of(other).values()] == [(0.1, 1), (0.3, 1)]
    # A group checkpoint written for other settings than the jobs have now is not continued.
    changed = tmp_path / "changed"
    members = changed / ".fused" / "0-1" / "members.json"
    members.write_text(members.read_text().replace('"epsilon": 0.2', '"epsilon": 0.25'))
    result = run_app_in_process(
        ["-m", *grid, "hydra/launcher=fused", f"hydra.sweep.dir={changed}", "resume_sweep=true"], tmp_path
    )
    assert result.returncode == 1
    for job in metrics_of(changed).values():
        assert job["status"] == "failed" and "smoothing.epsilon=0.25 in the checkpoint, 0.2 here" in job["error"]


def test_a_group_checkpoint_of_another_grouping_is_not_continued_and_goes_once_its_jobs_completed(
    tmp_path: Path,
) -> None:
    """An interrupted group 0-1, resumed in groups of one (``max_members`` changed): not continued, with a warning;
    it stayed behind for good (its jobs' numbers were not a group any more)."""
    sweep = tmp_path / "sweep"
    stale = sweep / ".fused" / "0-1"
    stale.mkdir(parents=True)
    (stale / "last.ckpt").write_bytes(b"an interrupted group's weights")
    grid = ["smoothing=uniform", "smoothing.epsilon=0.0,0.2", "model=mlp", "trainer.max_epochs=1", *QUIET]
    grid += ["logger=none", "figures=false", "resume_sweep=true", "hydra.launcher.max_members=1"]
    result = run_app_in_process(["-m", *grid, "hydra/launcher=fused", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Fused group 0-1's checkpoint is not continued: its jobs are grouped otherwise now" in result.stdout
    assert [job["status"] for job in metrics_of(sweep).values()] == ["completed"] * 2
    assert not (sweep / ".fused").exists()


@pytest.mark.parametrize("damage", ["empty checkpoint", "truncated members.json"])
def test_a_damaged_group_checkpoint_is_not_continued_and_its_jobs_train_from_their_start(
    tmp_path: Path, damage: str
) -> None:
    """``resume_sweep=true`` with a group checkpoint a full disk or a kill left damaged (an empty ``last.ckpt``, or
    a half-written ``members.json``, read first): a warning naming the file, and the jobs train afresh."""
    sweep = tmp_path / "sweep"
    grid = ["smoothing=uniform", "smoothing.epsilon=0.0,0.2", "model=mlp", "trainer.max_epochs=1", *QUIET]
    grid += ["logger=none", "figures=false", "hydra/launcher=fused", f"hydra.sweep.dir={sweep}"]
    group = sweep / ".fused" / "0-1"
    group.mkdir(parents=True)
    (group / "last.ckpt").write_bytes(b"")
    if damage == "truncated members.json":
        (group / "members.json").write_text('[{"model": ')
    result = run_app_in_process(["-m", *grid, "resume_sweep=true"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    damaged = "members.json is damaged (Expecting" if "members" in damage else "last.ckpt is damaged (ckpt_path="
    assert f"Fused group 0-1 cannot be continued: {damaged}" in result.stdout
    assert [job["status"] for job in metrics_of(sweep).values()] == ["completed"] * 2


@pytest.mark.slow
def test_ctrl_c_on_a_fused_group_records_each_member_and_says_how_to_continue(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    grid = ["smoothing=none,uniform", "model=mlp", "trainer.max_epochs=500", *QUIET, "logger=none", "figures=false"]
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "train.py"), "-m", *grid, "hydra/launcher=fused", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's process has it
    )
    deadline = time.monotonic() + 300
    while not (sweep / ".fused" / "0-1" / "last.ckpt").exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # Ctrl-C, during the group's fit
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert stderr.strip().splitlines()[-1] == (
        f"Interrupted: stopped by Ctrl-C; to continue from its last checkpoint, run the same command again with "
        f"resume_sweep=true hydra.sweep.dir={sweep} (completed jobs are skipped, interrupted ones continue)"
    )
    members = metrics_of(sweep)
    assert sorted(members) == [0, 1]
    for member in members.values():
        assert member["status"] == "failed" and member["error_type"] == "Interrupted"
        assert "resume_sweep=true" in member["error"]


def test_a_member_whose_schedule_its_strategy_refuses_fails_alone(tmp_path: Path) -> None:
    """No smoothing has no parameter to schedule: that job fails as it does alone; its group's other member
    trains and completes."""
    sweep = tmp_path / "sweep"
    grid = ["smoothing=none,uniform", "strategy_schedule=linear", "model=mlp", "trainer.max_epochs=1"]
    args = ["-m", *grid, *QUIET, "logger=none", "hydra/launcher=fused", f"hydra.sweep.dir={sweep}"]
    result = run_app_in_process(args, tmp_path)
    assert result.returncode == 1
    jobs = metrics_of(sweep)
    assert jobs[0]["status"] == "failed" and "no real-valued parameter" in jobs[0]["error"]
    assert jobs[1]["status"] == "completed" and jobs[1]["strategy_schedule"] == "linear"
    assert jobs[0]["fused_group"] == [] and jobs[1]["fused_group"] == [1]  # the member that trained, alone


def test_a_member_whose_directory_another_process_trains_in_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    """``resume_sweep=true`` of a sweep that another process still trains: the job being trained there is refused
    (its directory's ``.lock`` is held, here by a plain process) and nothing of it is written; the other member
    trains."""
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    with lock_held_by_another_process(sweep / "0" / ".lock"):
        grid = ["smoothing=none,uniform", "model=mlp", "trainer.max_epochs=1", "resume_sweep=true"]
        args = ["-m", *grid, *QUIET, "logger=none", "hydra/launcher=fused", f"hydra.sweep.dir={sweep}"]
        result = run_app_in_process(args, tmp_path)
    assert result.returncode == 1
    assert f"{sweep / '0'} is in use: another process is training there now" in result.stderr
    assert not (sweep / "0" / "metrics.json").exists() and not (sweep / "0" / "checkpoints").exists()
    assert json.loads((sweep / "1" / "metrics.json").read_text())["status"] == "completed"


def test_a_last_batch_of_one_that_batchnorm_cannot_train_on_fails_each_member_before_training(tmp_path: Path) -> None:
    """The refusal of a run alone (tests/test_errors.py), for a fused group: each member records it, untrained."""
    sweep = tmp_path / "sweep"
    grid = ["model=timm", "dataset.batch_size=16", "seed=0,1", "+trainer.max_steps=2", "logger=none", "figures=false"]
    result = run_app_in_process(["-m", *grid, *QUIET, "hydra/launcher=fused", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 1
    for job in metrics_of(sweep).values():
        assert job["status"] == "failed" and job["error"].startswith("the last training batch of each epoch holds one")

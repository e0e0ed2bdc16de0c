"""Damaged files left by an earlier fault (a full disk, a killed copy) never stop what comes after.

A resumed run whose ``last.ckpt`` is cut short or unreadable continues from the newest readable checkpoint and
says which, or refuses in one line when none is readable; a re-run sweep starts such a job afresh. The report
names a damaged ``metrics.json`` or predictions file and goes on with the other jobs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from labelsmooth.report.cli import main as report_main
from labelsmooth.report.jobs import read_job
from labelsmooth.runs.checkpoints import CheckpointError
from labelsmooth.runs.context import RunContext
from labelsmooth.runs.resume import choose_checkpoint, find_run_to_resume, start_checkpoint
from labelsmooth.runs.sweeps import can_continue
from tests.conftest import run_app_in_process, run_training
from tests.report_helpers import make_report

# A schedule that does not follow trainer.max_epochs: a resumed run may train on past the killed run's end.
TRAIN = ["model=mlp", "trainer.max_epochs=2", "scheduler=multistep"]


def cut_in_half(path: Path) -> None:
    """``path`` made a plain file holding the first half of its bytes; a link is replaced, its target kept (as a
    ``last.ckpt`` written as a file of its own and cut short)."""
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 2])


def trained_run(run_dir: Path) -> Path:
    """A tiny real run (digits, MLP, two epochs of three batches), left as if killed before its end (no
    ``metrics.json``); returns its checkpoint folder."""
    run_training(run_dir, TRAIN)
    (run_dir / "metrics.json").unlink()
    return run_dir / "checkpoints"


def resume_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name.startswith("labelsmooth.runs") and r.levelno == logging.WARNING
    ]


# --- Resume -------------------------------------------------------------------------------------------------


def test_a_cut_short_last_checkpoint_resumes_from_the_best_one(tmp_path: Path, caplog) -> None:
    checkpoints = trained_run(tmp_path)
    last = checkpoints / "last.ckpt"
    (best,) = checkpoints.glob("best-epoch*.ckpt")
    best_epoch = torch.load(best, weights_only=True)["epoch"]
    cut_in_half(last)
    with caplog.at_level(logging.WARNING):
        summary = run_training(tmp_path, [*TRAIN, "trainer.max_epochs=3", "resume=true"])
    (warning,) = resume_warnings(caplog)
    assert warning.startswith(f"resume: {last} is not readable (")
    assert f"continuing from {best} (epoch {best_epoch}," in warning and "\n" not in warning
    assert summary["status"] == "completed" and summary["epochs"] == 3  # trained on from the best epoch
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "completed"
    assert torch.load(last, weights_only=True)["epoch"] == 2  # the resumed run wrote a whole last.ckpt again


def test_with_every_checkpoint_damaged_resume_refuses_in_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    checkpoints = trained_run(run_dir)
    for path in checkpoints.glob("*.ckpt"):
        cut_in_half(path)
    with pytest.raises(CheckpointError) as raised:
        run_training(run_dir, [*TRAIN, "resume=true"])
    message = str(raised.value)
    assert "\n" not in message
    assert f"no readable checkpoint in {checkpoints} (" in message and "last.ckpt is not readable" in message
    assert "the run has to start again" in message and "without resume=" in message

    # As the user sees it: one line, no traceback, and the run's files are left as they were.
    result = run_app_in_process(
        [*TRAIN, "debug=fast", "logger=none", "trainer.enable_progress_bar=false", f"resume={run_dir}"],
        cwd=tmp_path,
        env={"HYDRA_FULL_ERROR": ""},
    )
    assert_one_line_error(result, f"no readable checkpoint in {checkpoints}")


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if fragment in line]
    assert len(lines) == 1 and "the run has to start again" in lines[0], result.stderr[-3000:]


def fake_checkpoint(path: Path, epoch: int, step: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "epoch": epoch, "global_step": step, "optimizer_states": [{}]}, path)
    return path


def test_the_newest_readable_checkpoint_is_chosen_by_the_epoch_it_holds(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    older = fake_checkpoint(checkpoints / "best-epoch001.ckpt", 1, 20)
    newer = fake_checkpoint(checkpoints / "best-epoch003.ckpt", 3, 40)
    (checkpoints / "best-epoch004.ckpt").write_bytes(b"PK\x03\x04 cut short")
    os.utime(older)  # the most recent file, holding an earlier epoch
    os.symlink("best-epoch009.ckpt", checkpoints / "last.ckpt")  # a link whose target is gone
    point = choose_checkpoint(tmp_path)
    assert (point.path, point.epoch, point.global_step) == (newer, 3, 40)
    assert point.damaged[checkpoints / "last.ckpt"] == "is a link to best-epoch009.ckpt, which does not exist"
    assert point.damaged[checkpoints / "best-epoch004.ckpt"].startswith("is not readable (")
    warning = point.fallback_warning()
    assert warning is not None and "\n" not in warning
    assert warning.startswith(f"resume: {checkpoints / 'last.ckpt'} is a link to best-epoch009.ckpt")
    assert "also unusable: best-epoch004.ckpt (is not readable" in warning

    (checkpoints / "last.ckpt").unlink()
    fake_checkpoint(checkpoints / "last.ckpt", 4, 50)
    point = choose_checkpoint(tmp_path)
    assert point.path == checkpoints / "last.ckpt" and point.fallback_warning() is None


def test_a_file_without_weights_is_not_resumed_from(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    torch.save({"epoch": 3}, checkpoints / "last.ckpt")  # readable, but not a Lightning checkpoint
    with pytest.raises(CheckpointError, match=r"last\.ckpt is not a Lightning checkpoint"):
        start_checkpoint(True, None, RunContext(output_dir=tmp_path))


def test_a_checkpoint_of_weights_alone_is_not_continued(tmp_path: Path) -> None:
    """A fused member's checkpoints hold its weights without optimizer state: Lightning would restore the weights
    and then fail. Resuming its job under the basic launcher starts it afresh; resume= says why."""
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    torch.save({"state_dict": {}, "epoch": 1, "global_step": 10}, checkpoints / "last.ckpt")
    point = choose_checkpoint(tmp_path)
    assert point.path is None and "no optimizer state" in point.damaged[checkpoints / "last.ckpt"]
    with pytest.raises(CheckpointError, match="hydra/launcher=fused resume_sweep=true"):
        start_checkpoint(True, None, RunContext(output_dir=tmp_path))


def test_a_run_whose_last_checkpoint_link_dangles_is_still_found_to_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "2026-01-01" / "10-00-00"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    best = fake_checkpoint(run_dir / "checkpoints" / "best-epoch002.ckpt", 2, 30)
    os.symlink("gone.ckpt", run_dir / "checkpoints" / "last.ckpt")
    assert find_run_to_resume(tmp_path, ["seed=1", "resume=true"]) == run_dir
    assert start_checkpoint(True, None, RunContext(output_dir=run_dir))[0] == str(best)


def test_a_sweep_job_with_only_damaged_checkpoints_starts_afresh(tmp_path: Path, caplog) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "last.ckpt").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert not can_continue(tmp_path, ["seed=1"])
    (warning,) = resume_warnings(caplog)
    assert warning.startswith(f"resume_sweep: no readable checkpoint in {checkpoints} (last.ckpt is not readable")
    assert warning.endswith("this job starts afresh")
    fake_checkpoint(checkpoints / "best-epoch000.ckpt", 0, 10)
    assert can_continue(tmp_path, ["seed=1"])  # from its best checkpoint (start_checkpoint says so)


# --- Report -------------------------------------------------------------------------------------------------


def write_job(sweep: Path, number: int, gamma: float, seed: int, correct: float) -> Path:
    """A completed job of a γ sweep with its metrics.json and test predictions (30 samples, 3 classes)."""
    job = sweep / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"smoothing.gamma={gamma}", f"seed={seed}"]))
    metrics = {
        "status": "completed", "dataset": "digits", "model": "mlp", "smoothing": "gamma", "smoothing.gamma": gamma,
        "seed": seed, "val/acc_best": correct, "test/ece": 0.1, "test/ece_ts": 0.05,
    }  # fmt: skip
    (job / "metrics.json").write_text(json.dumps(metrics))
    rng = np.random.default_rng(number)
    targets = rng.integers(0, 3, size=30).astype(np.int64)
    logits = rng.normal(size=(30, 3)).astype(np.float32)
    logits[np.arange(30), targets] += 3 * correct
    (job / "predictions").mkdir()
    np.savez(job / "predictions" / "test.npz", logits=logits, targets=targets)
    return job


def test_the_report_names_damaged_files_and_goes_on_with_the_other_jobs(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "multirun" / "2026-01-01" / "00-00-00"
    jobs = [write_job(sweep, n, g, s, 0.8 + 0.05 * n) for n, (g, s) in enumerate([(0.5, 0), (0.5, 1), (1, 0), (1, 1)])]
    cut_in_half(jobs[1] / "metrics.json")
    damaged_predictions = jobs[2] / "predictions" / "test.npz"
    cut_in_half(damaged_predictions)

    assert report_main([str(sweep)]) == 0
    out = capsys.readouterr().out.splitlines()
    (unreadable,) = [line for line in out if str(jobs[1]) in line]
    assert unreadable.startswith(f"unreadable: {jobs[1]} metrics.json cannot be read (JSONDecodeError: ")
    (npz,) = [line for line in out if str(damaged_predictions) in line]
    assert npz.startswith(f"warning: {damaged_predictions} cannot be read (BadZipFile: ")
    assert npz.endswith("left out of the risk–coverage curves")

    report = make_report([sweep], plots=True)
    assert sorted(j.status for j in report.jobs) == ["completed", "completed", "completed", "unreadable"]
    accuracy = next(t for t in report.tables if t.metric.key == "val/acc_best")
    assert {v: sorted(s) for v, s in accuracy.values["digits"].items()} == {0.5: [0], 1.0: [0, 1]}
    assert (sweep / "risk_coverage_digits.png").read_bytes()[:4] == b"\x89PNG"  # from the readable predictions
    text = report.markdown.read_text()
    assert f"- `{jobs[1]}` (unreadable):" in text and f"- {damaged_predictions} cannot be read" in text


def test_a_report_of_no_readable_job_or_of_a_baseline_it_lacks_writes_nothing(tmp_path: Path, capsys) -> None:
    """Both wrote first: an empty report over the sweep's good one (exit 0), and ``runs.csv`` before refusing the
    baseline."""
    sweep = tmp_path / "multirun" / "2026-01-01" / "00-00-00"
    jobs = [write_job(sweep, n, g, 0, 0.8) for n, g in enumerate([0.5, 1])]
    assert report_main([str(sweep)]) == 0
    before = {path: path.read_bytes() for path in sweep.glob("*") if path.is_file()}
    assert report_main([str(sweep), "--baseline", "0.7"]) == 2
    assert "--baseline 0.7" in capsys.readouterr().err
    for job in jobs:
        cut_in_half(job / "metrics.json")
    assert report_main([str(sweep)]) == 2
    assert capsys.readouterr().err.strip() == (
        "report.py: no job completed (2 unreadable; their metrics.json say why): nothing to report"
    )
    assert {path: path.read_bytes() for path in sweep.glob("*") if path.is_file()} == before


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"status": "compl', "metrics.json cannot be read (JSONDecodeError: Unterminated string"),
        (b"\xff\xfe\x00garbage", "metrics.json cannot be read (UnicodeDecodeError: "),
        (b"[0.9, 0.1]", "metrics.json is not a JSON object (a list)"),
    ],
)
def test_a_damaged_metrics_file_makes_its_job_unreadable(tmp_path: Path, content: bytes, why: str) -> None:
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "metrics.json").write_bytes(content)
    job = read_job(tmp_path)
    assert job.status == "unreadable" and job.metrics == {}
    assert job.error.startswith(why) and job.error.endswith("cut short or damaged; the job is not counted")

"""Faults, bad input, secrets and reproducibility: what the user sees when something goes wrong."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from labelsmooth.callbacks.nan_guard import NonFiniteLossError, NonFiniteLossGuard
from labelsmooth.cli.checks import check_devices
from labelsmooth.cli.data_checks import check_model_fits_data
from labelsmooth.data import DigitsDataModule
from labelsmooth.errors import ConfigurationError
from labelsmooth.models import MLP, ResNetV1
from labelsmooth.runs.checkpoints import CheckpointError, load_checkpoint
from labelsmooth.runs.files import write_text_atomic
from labelsmooth.runs.history import read_history_csv
from labelsmooth.runs.resume import find_run_to_resume, previous_wandb_run_id
from labelsmooth.specification import SPECIFICATION_KEY
from labelsmooth.tracking.wandb_run import REDACTED, redact_secrets
from tests.conftest import (
    REPO_ROOT,
    compose_train_config,
    lock_held_by_another_process,
    run_app,
    run_cli,
    run_training,
    subprocess_env,
)
from tests.wandb_records import offline_run_of

QUIET = ["trainer.enable_progress_bar=false", "figures=false"]  # no test here reads a figure
RESULT_KEYS = ("val/acc", "val/acc_best", "val/nll", "val/ece", "test/acc", "test/nll", "test/ece", "test/brier")


def assert_short_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-2000:]


def cli(args: list[str], tmp_path: Path, runner=run_app, **env) -> subprocess.CompletedProcess:
    """The CLI as users run it, without HYDRA_FULL_ERROR: ``run_app`` (in this process unless under DDP), or
    ``runner=run_cli`` for a real process (what W&B's own processes print)."""
    return runner([*args, *QUIET, f"paths.log_dir={tmp_path}"], tmp_path, env={"HYDRA_FULL_ERROR": "", **env})


# --- Interruption -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_metrics_and_wandb_run(tmp_path: Path) -> None:
    overrides = ["model=mlp", "trainer.max_epochs=6", "trainer.deterministic=true", "logger=wandb", *QUIET]
    run_dir = kill_resume_and_compare(
        overrides, tmp_path, before_resume=lambda killed: any(killed.glob("wandb/offline-run-*"))
    )
    wandb_runs = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2 and len({name.rsplit("-", 1)[1] for name in wandb_runs}) == 1


@pytest.mark.slow
def test_a_killed_ddp_run_with_online_smoothing_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    """Two CPU processes; online smoothing's per-process statistics must not be lost at the checkpoint. The
    uninterrupted run is also ``trainer=ddp`` as a user starts it (CSV logger): its metrics count each sample once
    and equal one process's."""
    overrides = ["trainer=ddp", "smoothing=online", "model=mlp", "trainer.max_epochs=4", "trainer.deterministic=true"]
    overrides += ["dataset.eval_batch_size=64", "dataset.shift=0.1"]  # several evaluation batches; random shifts
    kill_resume_and_compare([*overrides, "logger=csv", *QUIET], tmp_path)
    (metrics_file,) = (tmp_path / "a" / "runs").glob("*/*/metrics.json")
    uninterrupted = json.loads(metrics_file.read_text())
    assert uninterrupted["status"] == "completed" and uninterrupted["world_size"] == 2
    assert list(metrics_file.parent.glob("csv/**/metrics.csv"))
    assert_ddp_metrics_equal_one_process(uninterrupted, [o for o in overrides if o != "trainer=ddp"], tmp_path)


def assert_ddp_metrics_equal_one_process(ddp: dict, overrides: list[str], tmp_path: Path) -> None:
    """Digits has 269 validation and 359 test images: odd, so a padding sampler would repeat one of them. The
    validation and test metrics of a DDP run equal those of its checkpoint evaluated in one process."""
    import pytorch_lightning as pl

    from labelsmooth.cli.build import build_datamodule, build_module

    cfg = compose_train_config([*overrides, "logger=none"], output_dir=tmp_path / "single")
    datamodule = build_datamodule(cfg.dataset)
    assert len(datamodule.val_set) % 2 == 1 and len(datamodule.test_set) % 2 == 1
    module = build_module(cfg, datamodule)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, callbacks=[])
    single = trainer.validate(module, datamodule=datamodule, ckpt_path=ddp["checkpoint"], weights_only=True)[0]
    single |= trainer.test(module, datamodule=datamodule, ckpt_path=ddp["checkpoint"], weights_only=True)[0]
    for key in ("val/acc", "val/nll", "val/ece", "val/brier", "test/acc", "test/nll", "test/ece", "test/brier"):
        assert ddp[key] == pytest.approx(single[key], abs=1e-6), key


def kill_resume_and_compare(overrides: list[str], tmp_path: Path, before_resume=lambda run_dir: True) -> Path:
    """A reference run; the same run SIGKILLed after its first checkpoint, then ``resume=true``: it finishes in
    its own directory with the reference's metrics. ``before_resume(run_dir)`` must hold for the killed run. The
    reference and the resumed run run in-process, except under DDP (Lightning starts its second rank from the
    command line)."""
    reference = run_app([*overrides, f"paths.log_dir={tmp_path / 'a'}"], tmp_path)
    assert reference.returncode == 0, reference.stderr[-2000:]
    (reference_metrics,) = (tmp_path / "a" / "runs").glob("*/*/metrics.json")

    log_dir = tmp_path / "b"
    args = [*overrides, f"paths.log_dir={log_dir}"]
    run_dir = kill_after_first_checkpoint(args, log_dir, tmp_path)
    assert before_resume(run_dir)
    # what writes a kill interrupts leave (an atomic write's temporary file, a checkpoint's), and a user's file
    unfinished = [
        run_dir / "checkpoints" / ".best-epoch002.ckpt.k1ll3d_x.tmp",
        run_dir / "checkpoints" / "last.ckpt.tmp",
    ]
    users = [run_dir / "notes.tmp", run_dir / ".notes.tmp"]
    for path in [*unfinished, *users]:
        path.write_bytes(b"partial")

    time.sleep(1.1)  # a fresh run would get another <time> directory
    resumed = run_app([*args, "resume=true"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not any(path.exists() for path in unfinished) and all(path.exists() for path in users)
    assert [p.parent for p in log_dir.glob("runs/*/*/metrics.json")] == [run_dir]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = json.loads(reference_metrics.read_text())
    assert metrics["status"] == "completed"
    for key in RESULT_KEYS:
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6), (key, resumed.stderr[-3000:])
    # The training curve too: the epochs before the kill kept, the others written by the resumed run.
    history, reference_history = (read_history_csv(d / "history.csv") for d in (run_dir, reference_metrics.parent))
    epochs = list(range(expected["epochs"]))
    assert [row["epoch"] for row in history] == [row["epoch"] for row in reference_history] == epochs
    for row, expected_row in zip(history, reference_history, strict=True):
        assert row.keys() == expected_row.keys() and row == pytest.approx(expected_row, abs=1e-6)
    return run_dir


def kill_after_first_checkpoint(args: list[str], log_dir: Path, cwd: Path) -> Path:
    """Start ``train.py <args>``, SIGKILL its process group once ``last.ckpt`` exists; return the run directory."""
    output = cwd / "killed_run.log"
    with output.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "train.py"), *args],
            cwd=cwd, env=subprocess_env(), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(log_dir.glob("runs/*/*/checkpoints/last.ckpt")) and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before its first checkpoint:\n" + output.read_text()[-3000:]
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    (run_dir,) = log_dir.glob("runs/*/*")
    assert not (run_dir / "metrics.json").exists(), "the run finished before it was killed"
    return run_dir


def test_sigterm_fails_the_run_with_a_non_zero_exit_code_and_says_how_to_continue(tmp_path: Path) -> None:
    """A scheduler's time limit or preemption: Lightning's SIGTERMException would exit 0, as if the run succeeded."""
    log_dir = tmp_path / "runs_root"
    args = ["model=mlp", "trainer.max_epochs=200", "logger=none", *QUIET, f"paths.log_dir={log_dir}"]
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "train.py"), *args],
        cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(log_dir.glob("runs/*/*/checkpoints/last.ckpt")) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0][-3000:]
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0, output[-3000:]
    assert "Interrupted: stopped by SIGTERM" in output and "resume=true" in output
    (metrics_file,) = log_dir.glob("runs/*/*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert metrics["status"] == "failed" and metrics["error_type"] == "Interrupted"
    assert "run it again with the same overrides and resume=true" in metrics["error"]


def test_resume_with_nothing_to_resume_is_a_short_error(tmp_path: Path) -> None:
    assert_short_error(
        cli(["debug=fast", "logger=none", "resume=true"], tmp_path),
        "nothing to resume: no earlier run with the same overrides under",
    )


def finished_run(run_dir: Path, overrides: list[str]) -> bytes:
    """A run directory as a completed run leaves it (metrics.json, .hydra/overrides.yaml, last.ckpt); returns the
    bytes of its metrics.json."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"the finished run's weights")
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    metrics = {"status": "completed", "overrides": sorted(overrides), "test/acc": 0.97, "val/acc_best": 0.98}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return (run_dir / "metrics.json").read_bytes()


def test_resuming_a_finished_run_with_other_overrides_leaves_its_results(tmp_path: Path) -> None:
    run_dir = tmp_path / "finished"
    common = ["debug=fast", "logger=none", *QUIET, f"paths.log_dir={tmp_path}"]
    before = finished_run(run_dir, [*common, "smoothing=uniform"])
    result = cli(["debug=fast", "logger=none", "smoothing=gamma", f"resume={run_dir}"], tmp_path)
    assert_short_error(
        result,
        "holds the completed run of another job (the finished run had smoothing=uniform; this command has "
        "smoothing=gamma)",
        "Resume it with its own overrides",
    )
    assert (run_dir / "metrics.json").read_bytes() == before
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == b"the finished run's weights"
    assert "smoothing=uniform" in (run_dir / ".hydra" / "overrides.yaml").read_text()  # put back after Hydra


def test_training_a_completed_job_again_in_its_directory_is_refused(tmp_path: Path) -> None:
    """Trained again there, the job would replace the run's history and checkpoints before its own result (and an
    interruption would leave them mixed with the completed metrics.json)."""
    run_dir = tmp_path / "finished"
    args = ["debug=fast", "logger=none", *QUIET, f"paths.log_dir={tmp_path}"]
    before = finished_run(run_dir, args)
    result = cli(["debug=fast", "logger=none", f"hydra.run.dir={run_dir}"], tmp_path)
    assert_short_error(result, f"{run_dir} holds this job's completed run, left as it is (resume={run_dir} skips it)")
    assert (run_dir / "metrics.json").read_bytes() == before
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == b"the finished run's weights"


def test_resuming_a_finished_run_runs_nothing_and_keeps_its_completed_result(tmp_path: Path) -> None:
    run_dir = tmp_path / "finished"
    before = finished_run(run_dir, ["debug=fast", "logger=none", *QUIET, f"paths.log_dir={tmp_path}"])
    result = cli(["debug=fast", "logger=none", f"resume={run_dir}"], tmp_path)  # its last.ckpt is not a checkpoint
    output = result.stdout + result.stderr
    assert result.returncode == 0 and f"{run_dir / 'metrics.json'} says completed: the job is not run again" in output
    assert "test accuracy" not in output and (run_dir / "metrics.json").read_bytes() == before
    # Where its outputs go or how they are logged does not make another job: skipped as well, not refused
    result = cli(["debug=fast", "logger=csv", "figures=false", f"resume={run_dir}"], tmp_path)
    assert result.returncode == 0 and "says completed: the job is not run again" in result.stdout + result.stderr
    # With ckpt_path= as well (a missing file here), the two ways to start are refused, not skipped
    result = cli(["debug=fast", "logger=none", f"resume={run_dir}", f"ckpt_path={tmp_path / 'gone.ckpt'}"], tmp_path)
    assert_short_error(result, f"resume={run_dir} and ckpt_path={tmp_path / 'gone.ckpt'} both say where training")
    assert (run_dir / "metrics.json").read_bytes() == before


def unfinished_run(tmp_path: Path, args: list[str]) -> tuple[Path, dict[str, bytes]]:
    """A real run of ``args`` made unfinished, as a kill leaves it: its checkpoints and ``.hydra/`` files, a
    ``metrics.json`` that says interrupted. Returns its directory and the bytes of what it left."""
    assert cli(args, tmp_path).returncode == 0
    (run_dir,) = (path.parent for path in tmp_path.glob("runs/*/*/metrics.json"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.update(status="failed", error_type="Interrupted")
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    shutil.rmtree(run_dir / ".hydra" / "completed")  # kept at the start of an unfinished run: its own files
    (run_dir / ".hydra" / "completed").mkdir()
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        shutil.copy(run_dir / ".hydra" / name, run_dir / ".hydra" / "completed" / name)
    left = [run_dir / "metrics.json", *(run_dir / ".hydra").glob("*.yaml"), *(run_dir / "checkpoints").glob("*")]
    return run_dir, {str(path): path.read_bytes() for path in left}


def test_a_command_refused_in_an_unfinished_runs_directory_leaves_it_resumable(tmp_path: Path) -> None:
    """Another job pointed at an unfinished run's directory, the same job without resume=, and resume= with other
    training settings are refused in one line; its checkpoints, metrics.json and .hydra/ files stay as they were,
    so resume=true still finds and continues it."""
    args = ["model=mlp", "debug=fast", "logger=none", "smoothing=uniform"]
    run_dir, left = unfinished_run(tmp_path, args)

    def unchanged() -> bool:
        return all(Path(path).read_bytes() == content for path, content in left.items())

    refused = {
        "holds the checkpoints of an unfinished run": ["smoothing=none", f"hydra.run.dir={run_dir}"],
        f"resume={run_dir} continues it with its own overrides": [f"hydra.run.dir={run_dir}"],
        "optimizer.lr": ["optimizer.lr=0.5", f"resume={run_dir}"],
    }
    for fragment, extra in refused.items():
        assert_short_error(cli([*args, *extra], tmp_path), fragment)
        assert unchanged(), fragment
    result = cli([*args, "resume=true"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Resuming from {run_dir / 'checkpoints'}" in result.stdout + result.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"


def test_find_run_to_resume_matches_overrides_only(tmp_path: Path) -> None:
    for name, overrides in (("2026-01-01/10-00-00", ["seed=1"]), ("2026-01-01/11-00-00", ["seed=2"])):
        run = tmp_path / name
        (run / ".hydra").mkdir(parents=True)
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
        (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    assert find_run_to_resume(tmp_path, ["seed=1", "resume=true"]) == tmp_path / "2026-01-01/10-00-00"
    assert find_run_to_resume(tmp_path, ["seed=3", "resume=true"]) is None
    assert find_run_to_resume(tmp_path, ["seed=1", "resume=true", "logger=csv", "paths.data_dir=/data"]) is not None
    killed = tmp_path / "2026-01-01/12-00-00"  # killed before its first checkpoint: no last.ckpt, no metrics.json
    (killed / ".hydra").mkdir(parents=True)
    (killed / ".hydra" / "overrides.yaml").write_text("- seed=2\n")
    assert find_run_to_resume(tmp_path, ["seed=2"]) == tmp_path / "2026-01-01/11-00-00"
    assert find_run_to_resume(tmp_path, ["seed=2"], with_checkpoint=False) == killed
    assert find_run_to_resume(tmp_path, ["seed=2"], with_checkpoint=False, exclude=killed) is None
    (killed / "metrics.json").write_text('{"status": "failed"}')  # a run that failed and said so is not "killed"
    assert find_run_to_resume(tmp_path, ["seed=2"], with_checkpoint=False) is None
    (tmp_path / "wandb" / "offline-run-20260101_100000-abc123").mkdir(parents=True)
    assert previous_wandb_run_id(tmp_path) == "abc123"


# --- Failed jobs and non-finite losses ----------------------------------------------------------------------


def test_a_failed_job_does_not_stop_the_sweep(tmp_path: Path) -> None:
    result = cli(["-m", "smoothing=gamma", "smoothing.gamma=0.05,0.8", "debug=fast", "logger=wandb"], tmp_path)
    assert_short_error(result, "1/K=0.1")
    jobs = sorted((tmp_path / "multirun").glob("*/*/*/metrics.json"))
    failed, completed = (json.loads(p.read_text()) for p in jobs)
    assert failed["status"] == "failed" and failed["error_type"] == "ConfigurationError" and "gamma" in failed["error"]
    assert completed["status"] == "completed" and completed["smoothing.gamma"] == 0.8
    # The failed job failed before training, and still has its W&B run in the sweep's group, with the error.
    page = offline_run_of(jobs[0].parent)
    assert (
        page.exit_code == 1 and page.group.startswith("sweep-") and page.group == offline_run_of(jobs[1].parent).group
    )
    assert page.summary["error_type"] == "ConfigurationError" and "gamma" in page.summary["error"]


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    overrides = ["model=mlp", "optimizer=sgd", "optimizer.lr=1e30", "callbacks.nan_guard.check_every_n_steps=1"]
    with pytest.raises(NonFiniteLossError, match=r"global step \d+ .*learning rate too high"):
        run_training(tmp_path, overrides)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error_type"] == "NonFiniteLossError"
    for checkpoint in (tmp_path / "checkpoints").glob("*.ckpt"):
        weights = torch.load(checkpoint, weights_only=True)["state_dict"]
        assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


@pytest.mark.parametrize("bad_epoch,bad_batch,accumulate,step", [(0, 3, 1, 3), (0, 5, 2, 2), (1, 2, 1, 10)])
def test_the_non_finite_loss_message_names_the_step_and_batch_that_produced_it(
    bad_epoch: int, bad_batch: int, accumulate: int, step: int
) -> None:
    import pytorch_lightning as pl

    class NaNAtOneBatch(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            loss = self.layer(batch[0]).square().mean()
            bad = self.current_epoch == bad_epoch and batch_idx == bad_batch
            return loss * float("nan") if bad else loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 2)), batch_size=2)  # 8 batches
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accumulate_grad_batches=accumulate, callbacks=[NonFiniteLossGuard(1)],
    )  # fmt: skip
    expected = rf"global step {step} \(epoch {bad_epoch}, batch {bad_batch};"
    with pytest.raises(NonFiniteLossError, match=expected):
        trainer.fit(NaNAtOneBatch(), data)


def test_weights_made_non_finite_by_a_step_with_a_finite_loss_stop_the_run_before_validation() -> None:
    import pytorch_lightning as pl

    class OverflowingStep(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)
            self.validated = False

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).square().mean()  # finite: the weights are still finite here

        def validation_step(self, batch, batch_idx):
            self.validated = True

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=float("inf"))  # the update writes inf / NaN

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(2, 2)), batch_size=2)  # 1 batch
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[NonFiniteLossGuard(1)], num_sanity_val_steps=0,
    )  # fmt: skip
    module = OverflowingStep()
    with pytest.raises(NonFiniteLossError, match=r"weights became non-finite by global step 0 .*learning rate: inf"):
        trainer.fit(module, data, data)
    assert not module.validated


# --- W&B, secrets, atomic writes ------------------------------------------------------------------------------


def test_wandb_online_without_login_falls_back_to_offline(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    summary = run_training(tmp_path / "run", ["logger=wandb", "logger.offline=false"])
    assert summary["status"] == "completed"
    assert "logging offline instead" in caplog.text
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


def test_wandb_online_without_network_falls_back_to_offline(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    summary = run_training(tmp_path, ["logger=wandb"])
    assert summary["status"] == "completed"
    assert "cannot reach 127.0.0.1:9" in caplog.text


@pytest.mark.slow
def test_no_secret_reaches_logs_configs_or_metrics(tmp_path: Path) -> None:
    """A real process (what W&B's own processes write) of two jobs: one that fails (γ=0.05 < 1/K), whose error is
    written too, and one that completes."""
    secret = "s3cr3t-" + "k" * 33
    grid = ["-m", "debug=fast", "logger=wandb", "smoothing=gamma", "smoothing.gamma=0.05,0.8"]
    result = cli(grid, tmp_path, run_cli, WANDB_API_KEY=secret)
    assert result.returncode == 1, result.stderr[-2000:]
    statuses = sorted(json.loads(path.read_text())["status"] for path in tmp_path.rglob("metrics.json"))
    assert statuses == ["completed", "failed"]
    assert secret not in result.stdout + result.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000]
    assert files
    for path in files:
        assert secret.encode() not in path.read_bytes(), path


def test_wandb_run_name_config_and_disabled_mode(tmp_path: Path, monkeypatch) -> None:
    from labelsmooth.cli.tracking import instantiate_logger, wandb_config
    from labelsmooth.runs.context import RunContext

    cfg = compose_train_config(["logger=wandb"], output_dir=tmp_path)
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    context = RunContext(output_dir=tmp_path, override_dirname="+wandb_api_key=abcdefgh12345678,seed=3")
    logger = instantiate_logger(cfg, context)  # starts the W&B run (its metric definitions): finished below
    try:
        assert logger._wandb_init["name"] == f"+wandb_api_key={REDACTED},seed=3"
    finally:  # an unfinished run would be what the next in-process wandb.init returns
        logger.experiment.finish()
    choices = {"dataset": "digits", "model": "resnet_v1", "smoothing": "gamma", "hydra/launcher": "basic"}
    config = wandb_config(cfg, choices)
    assert config["choices"] == {"dataset": "digits", "model": "resnet_v1", "smoothing": "gamma"}
    assert config["seed"] == cfg.seed and config["smoothing"]["_target_"] == cfg.smoothing._target_
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert instantiate_logger(cfg, context) is False


def test_each_run_stages_its_wandb_files_under_its_own_directory_unless_the_user_chose(
    tmp_path: Path, monkeypatch
) -> None:
    from labelsmooth.cli import tracking

    monkeypatch.delenv("WANDB_DATA_DIR", raising=False)
    monkeypatch.setattr(tracking, "_staging_dir", None)
    for run_dir in (tmp_path / "first", tmp_path / "second"):  # two runs of one process (a sweep, a notebook)
        tracking.stage_wandb_files_under(run_dir)
        assert os.environ["WANDB_DATA_DIR"] == str(run_dir / ".wandb-data")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "mine"))
    tracking.stage_wandb_files_under(tmp_path / "third")
    assert os.environ["WANDB_DATA_DIR"] == str(tmp_path / "mine")


def test_redact_secrets() -> None:
    config = {"logger": {"api_key": "abc", "name": "run"}, "note": "token=SECRETVALUE1", "list": ["SECRETVALUE1"]}
    redacted = redact_secrets(config, {"SECRETVALUE1"})
    assert redacted == {"logger": {"api_key": REDACTED, "name": "run"}, "note": f"token={REDACTED}", "list": [REDACTED]}
    overrides = ["+logger.api_key=plain-value", "seed=1", "smoothing.gamma=0.8"]
    assert redact_secrets(overrides, set()) == [f"+logger.api_key={REDACTED}", "seed=1", "smoothing.gamma=0.8"]


def test_atomic_write_never_leaves_a_half_written_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "metrics.json"
    write_text_atomic(target, '{"status": "completed"}')
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not mkstemp's 0o600

    def crash(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, '{"status": "half')
    assert target.read_text() == '{"status": "completed"}'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# --- Bad input --------------------------------------------------------------------------------------------


def test_unknown_config_option_lists_the_valid_ones(tmp_path: Path) -> None:
    assert_short_error(cli(["smoothing=gama"], tmp_path), "gama", "gamma", "uniform")


def test_a_bad_strategy_parameter_is_refused_before_the_data_set_is_read(tmp_path: Path) -> None:
    # CIFAR-100 is absent here: the γ error (K = 100 from the config) comes first, not the missing files.
    args = ["debug=fast", "logger=none", "dataset=cifar100", "dataset.download=false", "smoothing=gamma"]
    result = cli([*args, "smoothing.gamma=0.005", f"paths.data_dir={tmp_path}/empty"], tmp_path)
    assert_short_error(result, "1/K=0.01")
    assert "cifar-100-python" not in result.stderr


def test_gamma_at_one_over_k_is_a_short_error_and_full_error_shows_the_traceback(tmp_path: Path) -> None:
    args = ["debug=fast", "logger=none", "smoothing=gamma", "smoothing.gamma=0.1"]
    short = cli(args, tmp_path)
    assert_short_error(short, "K=10", "1/K=0.1")
    assert (short.stdout + short.stderr).count("must exceed 1/K=0.1") == 1  # printed once, by Hydra
    (log_file,) = tmp_path.rglob("train.log")
    assert "must exceed 1/K=0.1" in log_file.read_text()  # and kept in the run's log
    full = cli(args, tmp_path, HYDRA_FULL_ERROR="1")
    assert full.returncode != 0 and "Traceback" in full.stderr


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["smoothing=uniform", "smoothing.epsilon=1"], r"epsilon=1 .*\[0, 1\)"),
        (["smoothing=gamma", "smoothing.gamma=0.0"], r"gamma=0.0 .*1/K"),
    ],
)
def test_out_of_range_parameters_name_the_range(tmp_path: Path, overrides, message: str) -> None:
    with pytest.raises(Exception, match=message):
        run_training(tmp_path, overrides)


def test_a_model_that_does_not_fit_the_data_set(tmp_path: Path) -> None:
    digits = DigitsDataModule()
    with pytest.raises(ConfigurationError, match=r"inputs of shape \(1, 8, 8\)"):
        check_model_fits_data(MLP(10, 1, 28), digits)
    with pytest.raises(ConfigurationError, match="3 classes"):
        check_model_fits_data(ResNetV1(7, 1, depth=8), type("D", (), {"image_shape": (1, 8, 8), "num_classes": 3})())
    check_model_fits_data(ResNetV1(10, 1, depth=8), digits)
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", num_classes=10, in_chans=1)  # asserts its 224-pixel input
    with pytest.raises(ConfigurationError, match=r"Input height \(8\).*model.pass_image_size=true"):
        check_model_fits_data(vit, digits)


def test_checkpoint_paths_that_cannot_work(tmp_path: Path) -> None:
    assert_short_error(cli(["debug=fast", "logger=none", f"ckpt_path={tmp_path}/missing.ckpt"], tmp_path),
                       "no such file", "resume=true")  # fmt: skip
    # Checked before the data set is read (or downloaded): the checkpoint error, not the missing CIFAR files.
    no_data = ["dataset=cifar10", f"dataset.root={tmp_path}/no-data", "dataset.download=false"]
    early = cli(["debug=fast", "logger=none", *no_data, f"ckpt_path={tmp_path}/missing.ckpt"], tmp_path)
    assert_short_error(early, "CheckpointError", "no such file")
    assert "cifar-10" not in early.stderr
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(garbage)
    summary = run_training(tmp_path / "mlp", ["model=mlp"])
    another_model = r"settings than this run's: model._target_='labelsmooth.models.MLP' in the checkpoint, 'labels"
    with pytest.raises(CheckpointError, match=another_model + r"mooth.models.ResNetV1' here\. Continue it"):
        run_training(tmp_path / "resnet", [f"ckpt_path={summary['checkpoint']}"])
    written = torch.load(summary["checkpoint"], weights_only=True)
    del written[SPECIFICATION_KEY]  # a checkpoint of a version that did not carry one: its weights are compared
    torch.save(written, tmp_path / "older.ckpt")
    with pytest.raises(CheckpointError, match="belongs to another model"):
        run_training(tmp_path / "resnet", [f"ckpt_path={tmp_path / 'older.ckpt'}"])


def test_more_devices_than_exist_is_refused(tmp_path: Path) -> None:
    cfg = compose_train_config(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=4096"], output_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="4096 CPU cores but this machine has"):
        check_devices(cfg.trainer)
    if not torch.cuda.is_available():
        gpu = compose_train_config(["trainer=gpu"], output_dir=tmp_path)
        with pytest.raises(ConfigurationError, match="asks for 1 GPU but this machine has none") as refused:
            check_devices(gpu.trainer)
        assert "trainer=cpu" in str(refused.value) and "devices=1 or fewer" not in str(refused.value)
    unknown = compose_train_config(["trainer.accelerator=tpuu"], output_dir=tmp_path)
    with pytest.raises(ConfigurationError, match=r"^trainer.accelerator=tpuu is not an accelerator: the choices are "):
        check_devices(unknown.trainer)
    xla = compose_train_config(["trainer.accelerator=tpu"], output_dir=tmp_path)  # no torch_xla here
    with pytest.raises(ConfigurationError, match=r"^trainer.accelerator=tpu is not available on this machine"):
        check_devices(xla.trainer)


# --- Reproducibility ----------------------------------------------------------------------------------------


def test_same_overrides_and_seed_give_the_same_metrics(tmp_path: Path) -> None:
    overrides = ["trainer.deterministic=true", "trainer.max_epochs=2", "trainer.limit_train_batches=5", "seed=3"]
    first = run_training(tmp_path / "1", overrides)
    second = run_training(tmp_path / "2", overrides)
    assert {k: v for k, v in first.items() if k != "checkpoint"} == {
        k: v for k, v in second.items() if k != "checkpoint"
    }


def test_num_threads_fixes_torchs_thread_pool_and_is_recorded(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        summary = run_training(tmp_path / "one", ["num_threads=1", "trainer.max_epochs=1"])
        assert summary["num_threads"] == 1 == torch.get_num_threads()
        assert json.loads((tmp_path / "one" / "metrics.json").read_text())["num_threads"] == 1
    finally:
        torch.set_num_threads(before)
    assert run_training(tmp_path / "default", ["trainer.max_epochs=1"])["num_threads"] == before
    for bad in ("0", "two", str((os.cpu_count() or 1) + 1)):  # more threads than cores: 100,000 crashed torch
        with pytest.raises(ConfigurationError, match=r"num_threads=.* must be an integer in \[1, "):
            run_training(tmp_path / f"bad{bad}", [f"num_threads={bad}"])


# --- DDP ----------------------------------------------------------------------------------------------------


def test_a_damaged_data_set_file_is_named(tmp_path: Path) -> None:
    from labelsmooth.data import DatasetNotFoundError
    from labelsmooth.data.torchvision_sets import CIFAR10DataModule

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (folder / name).write_bytes(b"\x80\x04not a pickle at all")
    (folder / "batches.meta").write_bytes(b"truncated")
    with pytest.raises(DatasetNotFoundError, match=r"damaged files .*checksum mismatch.*data_batch_1"):
        CIFAR10DataModule(root=str(tmp_path), download=False).prepare_data()
    assert_short_error(cli(["dataset=cifar10", f"dataset.root={tmp_path}", "dataset.download=false"], tmp_path),
                       "damaged files", "batches.meta")  # fmt: skip


def test_a_run_still_training_is_not_resumed_or_trained_over_by_another_process(tmp_path: Path) -> None:
    """A second process pointed at a run that another one is training (``resume=true`` while it still runs,
    ``resume=<dir>``, ``hydra.run.dir=<dir>``) wrote the same checkpoints and log. The run's ``.lock`` is held
    here by a plain process, as a training process holds it."""
    common = ["debug=fast", "logger=none", "figures=false", *QUIET, f"paths.log_dir={tmp_path}"]
    assert run_app([*common, "trainer.max_epochs=1"], tmp_path).returncode == 0
    (run_dir,) = (tmp_path / "runs").glob("*/*")
    (run_dir / "metrics.json").unlink()  # as a run that is still training has none yet
    with lock_held_by_another_process(run_dir / ".lock"):
        time.sleep(1.1)  # another second: a new run directory would be another <time>
        refusals = {
            "resume=true": f"a checkpoints/last.ckpt that is not still training ({run_dir} is, in another process)",
            f"resume={run_dir}": "nothing to resume: that run is still training in another process",
            f"hydra.run.dir={run_dir}": f"{run_dir} is in use: another process is training there now",
        }
        for override, refusal in refusals.items():
            result = run_app([*common, "trainer.max_epochs=1", override], tmp_path)
            assert result.returncode == 1 and refusal in result.stderr.strip().splitlines()[-1], result.stderr
            assert not (run_dir / "metrics.json").exists()
    resumed = run_app([*common, "trainer.max_epochs=1", f"resume={run_dir}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]  # the process that held it has ended
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"

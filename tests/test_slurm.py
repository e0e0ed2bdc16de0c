"""Sweeps on a real SLURM cluster (``hydra/launcher=slurm``, submitit), brought up on this machine by the
``slurm_cluster`` fixture; and the GPU of each job of a parallel sweep on one machine."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from labelsmooth.cli.devices import gpu_of_parallel_job, slurm_cpus_per_task, slurm_mem_gb, slurm_tasks_per_job
from tests.conftest import REPO_ROOT, metrics_of, run_app_in_process, run_cli, subprocess_env
from tests.datasets_on_disk import write_mnist
from tests.slurm_cluster import slurm_cluster  # noqa: F401  (the fixture)
from tests.wandb_records import offline_run_of

QUICK = ["trainer=cpu", "model=mlp", "trainer.max_epochs=2", "trainer.enable_progress_bar=false"]
QUICK += ["hydra.launcher.partition=debug"]


def job_logs(sweep: Path) -> str:
    """submitit's logs of the sweep's SLURM jobs (for the assertion messages)."""
    return "\n".join(p.read_text()[-2000:] for p in sorted(sweep.glob(".submitit/*/*_log.*")))


def slurm_sweep(args: list[str], cwd: Path, cluster: dict[str, str]) -> subprocess.CompletedProcess:
    """A sweep on the local cluster: the launcher in this process, its jobs in SLURM's."""
    return run_app_in_process(["-m", "hydra/launcher=slurm", *QUICK, *args], cwd, cluster)


@pytest.mark.slow
def test_a_two_job_sweep_runs_on_slurm_and_a_job_that_fails_fails_alone(
    tmp_path: Path,
    slurm_cluster: dict[str, str],  # noqa: F811
) -> None:
    sweep = tmp_path / "day" / "time"
    grid = ["smoothing=gamma", "smoothing.gamma=0.05,0.8"]  # γ = 0.05 < 1/K: job 0 fails, job 1 trains
    result = slurm_sweep([*grid, f"hydra.sweep.dir={sweep}"], tmp_path, slurm_cluster)
    assert result.returncode == 1, result.stderr[-3000:] + job_logs(sweep)
    jobs = metrics_of(sweep)
    assert sorted(jobs) == [0, 1]
    assert jobs[0]["status"] == "failed" and jobs[0]["error_type"] == "ConfigurationError"
    assert jobs[1]["status"] == "completed" and jobs[1]["smoothing.gamma"] == 0.8
    failed, completed = offline_run_of(sweep / "0"), offline_run_of(sweep / "1")
    assert failed.exit_code == 1 and completed.exit_code == 0
    assert failed.group == completed.group == "sweep-day-time"
    output = result.stdout + result.stderr  # no accounting here: one line says so, no sacct noise per poll
    assert output.count("SLURM accounting is off") == 1 and "Bypassing sacct error" not in output
    assert "states come from squeue" in output
    assert "accounting storage is disabled" not in output
    report = run_app_in_process([str(sweep)], tmp_path, script="report.py")
    assert report.returncode == 0, report.stderr[-3000:]
    failures = (sweep / "report.md").read_text().split("## Failed, unfinished and missing jobs")[1]
    assert "(failed):" in failures and "smoothing.gamma=0.05" in failures and "smoothing.gamma=0.8" not in failures


@pytest.mark.slow
def test_ddp_jobs_in_a_slurm_sweep_equal_a_hand_started_srun_run(
    tmp_path: Path,
    slurm_cluster: dict[str, str],  # noqa: F811
) -> None:
    """Also Lightning's distributed sampler over the in-memory batch fetch of a data set on disk (MNIST's idx
    files); and resources that follow each job of the sweep (``trainer.devices=2,1``: 2 tasks, then 1), where every
    job got those of the sweep's base config (2 tasks: the 1-device job failed Lightning's check)."""
    write_mnist(tmp_path / "data")
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "logger=csv", "seed=3"]
    ddp += ["dataset=mnist", f"dataset.root={tmp_path / 'data'}", "dataset.download=false", "dataset.val_size=0.34"]
    ddp += ["dataset.batch_size=4"]
    sweep = tmp_path / "sweep"
    result = slurm_sweep(
        [*ddp[:2], "trainer.devices=2,1", *ddp[3:], f"hydra.sweep.dir={sweep}"], tmp_path, slurm_cluster
    )
    assert result.returncode == 0, result.stderr[-3000:] + job_logs(sweep)
    assert "jobs 0: tasks_per_node=2, gpus_per_node=0" in result.stdout and "jobs 1: tasks_per_node=1" in result.stdout
    in_sweep, one_process = metrics_of(sweep)[0], metrics_of(sweep)[1]
    assert in_sweep["status"] == "completed" and in_sweep["world_size"] == 2 and in_sweep["dataset"] == "mnist"
    assert one_process["status"] == "completed" and one_process["world_size"] == 1

    by_hand = tmp_path / "by-hand"
    command = ["srun", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1"]
    command += [sys.executable, str(REPO_ROOT / "train.py"), *QUICK[:-1], *ddp, f"paths.log_dir={by_hand}"]
    done = subprocess.run(command, cwd=tmp_path, env=subprocess_env(**slurm_cluster), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (metrics_file,) = by_hand.glob("runs/*/*/metrics.json")
    alone = json.loads(metrics_file.read_text())
    assert alone["world_size"] == 2
    for key in ("val/acc", "val/acc_best", "val/nll", "test/acc", "test/nll", "test/ece"):
        assert in_sweep[key] == pytest.approx(alone[key], rel=1e-6), key


def test_a_ddp_sweep_outside_slurm_is_refused_naming_the_slurm_launcher(tmp_path: Path) -> None:
    result = run_app_in_process(["-m", "trainer=ddp", "trainer.accelerator=cpu", "debug=fast", "logger=none"], tmp_path)
    assert result.returncode != 0 and "hydra/launcher=slurm" in result.stderr


def test_slurm_resources_follow_the_job() -> None:
    assert slurm_tasks_per_job("ddp", 4) == 4 and slurm_tasks_per_job("ddp_spawn", 4) == 1
    # Lightning resolves "auto" with several devices to DDP, a process per device: 1 task failed its check
    assert slurm_tasks_per_job("auto", 4) == 4 and slurm_tasks_per_job("auto", 1) == 1
    assert slurm_cpus_per_task(0) == 1 and slurm_cpus_per_task(7) == 8
    assert slurm_mem_gb(3, 2) == 32


@pytest.mark.parametrize(
    ("trainer", "job", "gpus", "expected"),
    [
        ({"accelerator": "gpu", "devices": 1}, 5, 4, [1]),  # job k on GPU k mod n
        ({"accelerator": "auto", "devices": 1}, 3, 4, [3]),
        ({"accelerator": "gpu", "devices": 1}, 2, 0, None),  # no GPU
        ({"accelerator": "cpu", "devices": 1}, 2, 4, None),
        ({"accelerator": "gpu", "devices": 2}, 2, 4, None),  # the job's own count
        ({"accelerator": "gpu", "devices": [2]}, 1, 4, None),  # a list names its GPU
    ],
)
def test_each_job_of_a_parallel_sweep_gets_its_own_gpu(trainer: dict, job: int, gpus: int, expected) -> None:
    assert gpu_of_parallel_job(OmegaConf.create(trainer), job, gpus) == expected


HOLD_LOCKS = """
import fcntl, os, sys, time
for path in sys.argv[1:]:
    fcntl.lockf(os.open(path, os.O_RDWR | os.O_CREAT), fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def gpus_held_by_another_job(sweep: Path, *gpus: int) -> Iterator[None]:
    """Another process (another job of the sweep) holding the locks of ``gpus``."""
    (sweep / ".gpus").mkdir(parents=True, exist_ok=True)
    paths = [str(sweep / ".gpus" / f"gpu{gpu}.lock") for gpu in gpus]
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCKS, *paths], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_a_parallel_job_takes_a_gpu_no_other_job_of_its_sweep_holds(tmp_path: Path) -> None:
    """joblib gives the next job to whichever worker is free: job 2 of a 2-GPU sweep ran on GPU 0 beside job 0,
    which still trained there, while GPU 1 idled. Each job holds its GPU's lock until it ends, and the DataLoader
    workers it forked do not keep it after."""
    from labelsmooth.cli.devices import held_gpu_of_parallel_job

    one_gpu, sweep = OmegaConf.create({"accelerator": "gpu", "devices": 1}), str(tmp_path)
    with gpus_held_by_another_job(tmp_path, 0), held_gpu_of_parallel_job(one_gpu, 2, 2, sweep) as job_2:
        assert job_2 == [1]  # GPU 0 is job 0's
    with gpus_held_by_another_job(tmp_path, 0, 1), held_gpu_of_parallel_job(one_gpu, 4, 2, sweep) as job_4:
        assert job_4 == [0]  # more jobs at once than GPUs: it shares GPU 4 mod 2, as before
    with held_gpu_of_parallel_job(one_gpu, 3, 2, sweep) as job_3:
        assert job_3 == [1]  # all free again: from GPU 3 mod 2 on
        worker = os.fork()
        if worker == 0:  # a DataLoader worker, forked during the job, that outlives it
            time.sleep(30)
            os._exit(0)
    try:
        with gpus_held_by_another_job(tmp_path, 1):  # the next job could take GPU 1: the worker holds nothing
            pass
    finally:
        os.kill(worker, signal.SIGKILL)
        os.waitpid(worker, 0)
    cpu = OmegaConf.create({"accelerator": "cpu", "devices": 1})
    with held_gpu_of_parallel_job(cpu, 1, 2, sweep) as on_cpu:
        assert on_cpu is None


@pytest.mark.slow
def test_a_cancelled_slurm_job_continues_with_resume_sweep_to_the_uninterrupted_result(
    tmp_path: Path,
    slurm_cluster: dict[str, str],  # noqa: F811
) -> None:
    args = ["smoothing=uniform", "trainer.max_epochs=5", "logger=csv", "num_threads=1"]  # the same sums everywhere
    whole, cancelled = tmp_path / "whole", tmp_path / "cancelled"
    command = [sys.executable, str(REPO_ROOT / "train.py"), "-m", "hydra/launcher=slurm", *QUICK, *args]
    env = subprocess_env(**slurm_cluster)
    launcher = subprocess.Popen(
        [*command, f"hydra.sweep.dir={cancelled}"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    last = cancelled / "0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    subprocess.run(["scancel", "--user=root"], env=env, check=True)

    # The uninterrupted run, on this machine, while the launcher notices the cancelled job (submitit waits 15 s
    # for a result file that a cancelled job never writes)
    result = run_app_in_process(["-m", *QUICK[:-1], *args, f"hydra.sweep.dir={whole}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    launcher.wait(timeout=300)
    assert last.exists() and not json.loads((cancelled / "0" / "metrics.json").read_text()).get("test/acc")

    result = slurm_sweep([*args, f"hydra.sweep.dir={cancelled}", "resume_sweep=true"], tmp_path, slurm_cluster)
    assert result.returncode == 0, result.stderr[-3000:] + job_logs(cancelled)
    resumed, uninterrupted = metrics_of(cancelled)[0], metrics_of(whole)[0]
    assert resumed["status"] == "completed"
    for key in ("val/acc", "val/acc_best", "val/acc_best_epoch", "val/nll", "test/acc", "test/nll", "epochs"):
        assert resumed[key] == uninterrupted[key], key


@pytest.mark.skipif(
    os.environ.get("LABELSMOOTH_SLURM_REQUEUE") != "1",
    reason="about 4 minutes (SLURM holds a requeued job for about 2.5 minutes): LABELSMOOTH_SLURM_REQUEUE=1 runs it",
)
def test_a_job_at_its_time_limit_is_requeued_and_continues_to_the_uninterrupted_result(
    tmp_path: Path,
    slurm_cluster: dict[str, str],  # noqa: F811
) -> None:
    run = ["model=resnet_v1", "model.depth=8", "trainer.max_epochs=150", "logger=csv", "seed=1"]
    limits = ["hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=30", "hydra.launcher.max_num_timeout=10"]
    sweep = tmp_path / "slurm"
    result = slurm_sweep([*run, *limits, f"hydra.sweep.dir={sweep}"], tmp_path, slurm_cluster)
    assert result.returncode == 0, result.stderr[-3000:] + job_logs(sweep)
    log = (sweep / "0" / "train.log").read_text()
    assert "Interrupted: stopped by SLURM's signal before its time limit" in log  # the first start: signalled
    assert "requeued by SLURM (restart 1)" in log and "continues from its last checkpoint" in log

    whole = tmp_path / "whole"  # the same job, uninterrupted, on this machine
    result = run_cli(["-m", *QUICK[:-1], *run, f"hydra.sweep.dir={whole}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    requeued, uninterrupted = metrics_of(sweep)[0], metrics_of(whole)[0]
    assert requeued["status"] == "completed"
    for key in ("val/acc_best", "val/acc_best_epoch", "val/nll", "test/acc", "test/nll", "epochs"):
        assert requeued[key] == uninterrupted[key], key


def test_a_requeued_slurm_job_is_recognised_and_its_interruption_explained(monkeypatch) -> None:
    from hydra.core.hydra_config import HydraConfig

    from labelsmooth.cli.devices import slurm_restarts
    from labelsmooth.cli.errors import interruption_message

    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # no Hydra job in this process
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert slurm_restarts() == 0
    assert interruption_message(SystemExit(-1), multirun=True).startswith("stopped by Ctrl-C")
    assert "resume_sweep=true hydra.sweep.dir=<this sweep's directory> " in interruption_message(SystemExit(-1), True)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    assert slurm_restarts() == 2
    message = interruption_message(SystemExit(-1), multirun=True)
    assert message.startswith("stopped by SLURM's signal") and "continues from its last checkpoint" in message


def test_sacct_answers_from_squeue() -> None:
    from labelsmooth.cli.slurm_states import queued_states, sacct_lines

    states = queued_states("12_[2-3,5]|PENDING|\n12_0|RUNNING|vm\n14|RUNNING|vm")
    assert sacct_lines(["12_0", "12_1", "12_3", "12_5", "14", "15"], states) == [
        "JobID|State|NodeList", "12_0|RUNNING|vm", "12_1|LEFT_QUEUE|", "12_3|PENDING|", "12_5|PENDING|",
        "14|RUNNING|vm", "15|LEFT_QUEUE|",
    ]  # fmt: skip

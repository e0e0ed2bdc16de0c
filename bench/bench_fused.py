"""Benchmark 6: fused sweeps. The wall time and peak memory (proportional set size of the whole process tree, sampled
every 50 ms) of one 9-job grid (``smoothing=none,uniform,gamma seed=0,1,2``, 10 epochs on digits) for the MLP and
for ResNet-8, under the fused launcher (``hydra/launcher=fused``), the basic launcher (one job after another in one
process) and joblib with 2 workers; each grid run once, in that order (not alternated: compare within a run of the
benchmark). Two kinds of job: the defaults (W&B offline, checkpoints, the final figures, predictions: each member
still a complete run; the per-epoch validation diagrams off on every side, since a fused group draws none), and
metrics alone (``logger=none callbacks=none +trainer.enable_checkpointing=false``: the training and the final
validation and test, nothing drawn or written but ``metrics.json``). The members' metrics are compared with the
basic launcher's jobs (largest difference of ``val/acc_best`` and ``test/nll``): the fused (``batching=loop``) and
joblib ones must be equal, or the benchmark fails. The training alone is timed: the fused group's ``fit`` (its log
line, to 0.1 s), or the jobs' ``fit`` summed (``probes.WallClockMarks``; joblib's two workers' fits overlap).

With a CUDA device, also the GPU grid: the same 9 jobs of a ResNet-20 v1 on synthetic CIFAR-sized images
(``bench/conf/dataset/synthetic_cifar.yaml``, with the paper's 10 % shifts and flips), fused with
``hydra.launcher.batching=vmap`` against the basic launcher, with the GPU's peak of allocated memory
(``torch.cuda.max_memory_allocated`` in the training process). At the smoke size it runs on the CPU, tiny, so
that its command line cannot rot on machines without a GPU.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_startup import bench_env
from common import REPO_ROOT, benchmark_main

GRID = ["smoothing=none,uniform,gamma", "seed=0,1,2"]
MODELS = {"MLP": ["model=mlp"], "ResNet-8": ["model=resnet_v1", "model.depth=8"]}
LAUNCHERS = {
    "fused": ["hydra/launcher=fused"],
    "basic": [],
    "joblib, 2 workers": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}
# Equal work on every side: the fused group draws a validation diagram at its members' ends alone, so the per-epoch
# ones are off for every launcher; and with callbacks=none Lightning's own checkpoint callback would still write one
# per job under the basic and joblib launchers (none in a fused group).
JOBS = {
    "defaults": ["callbacks.calibration.plot_every_n_epochs=0"],
    "metrics alone": ["logger=none", "callbacks=none", "+trainer.enable_checkpointing=false"],
}
EXACT = ("fused", "joblib, 2 workers")  # the same arithmetic as the basic launcher's: their metrics must be equal
GPU_GOAL = 0.25  # the fused GPU grid's wall time over the basic launcher's
GPU_MODEL = "ResNet-20 · synthetic 32x32x3"
GPU_GRID_ARGS = [
    "hydra.searchpath=[file://bench/conf]",  # relative to the working directory, the repository's root
    "dataset=synthetic_cifar",
    "dataset.shift=0.1",
    "dataset.hflip=true",
    "model=resnet_v1",
    "model.depth=20",
]
GPU_LAUNCHERS = {"fused, vmap": ["hydra/launcher=fused", "hydra.launcher.batching=vmap"], "basic": []}
SMOKE_GPU_GRID = ["dataset.train_size=256", "dataset.val_size=64", "dataset.test_size=64", "model.depth=8"]


def proportional_set_size(pid: int) -> int:
    """``pid``'s proportional set size in bytes (``Pss`` of ``/proc/<pid>/smaps_rollup``): its private pages and its
    share of the pages it shares, so that the processes' sizes add up (their resident sizes would count torch's
    libraries once per process)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_memory_bytes(root: int) -> int:
    """The memory of ``root`` and all its descendants (Linux ``/proc``): their proportional set sizes summed."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += proportional_set_size(pid)
        stack.extend(children.get(pid, []))
    return total


def run_grid(args: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak memory of the process tree (``tree_memory_bytes``), and the output of ``python train.py
    <args>``."""
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a full pipe would stall the run
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "train.py", *args], cwd=REPO_ROOT, env=bench_env(), stdout=log, stderr=subprocess.STDOUT
        )
        peak = 0
        while process.poll() is None:
            peak = max(peak, tree_memory_bytes(process.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - start
        log.seek(0)
        output = log.read()
    if process.returncode != 0:
        raise RuntimeError(f"train.py {' '.join(args)} failed ({process.returncode}):\n{output[-3000:]}")
    return wall, peak, output


def training_seconds(output: str, marks: Path) -> float:
    """The time spent in ``fit``: the fused launcher's group fits (its log), or the jobs' fits summed (their
    ``probes.WallClockMarks``; in parallel jobs the sum exceeds the wall time they took)."""
    fused = re.findall(r"members trained in ([0-9.]+) s \(fit", output)
    if fused:
        return sum(float(seconds) for seconds in fused)
    lines = [json.loads(line) for line in marks.read_text().splitlines()]
    return sum(m["fit_end"] - m["fit_start"] for m in lines if "fit_start" in m)


def gpu_peak_mib(marks: Path) -> float | None:
    """The grid's peak of allocated GPU memory (``probes.WallClockMarks``' ``cuda_peak_mib``), None off the GPU."""
    lines = marks.read_text().splitlines() if marks.is_file() else []
    peaks = [json.loads(line).get("cuda_peak_mib") for line in lines]
    return max((peak for peak in peaks if peak is not None), default=None)


def metrics_of(sweep: Path) -> dict[int, dict[str, Any]]:
    return {int(p.parent.name): json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")}


def largest_difference(ours: dict[int, dict], theirs: dict[int, dict], key: str) -> float:
    return max(abs(ours[n][key] - theirs[n][key]) for n in theirs)


def measure_grid(
    tmp: str, model: str, args: list[str], kind: str, launchers: dict[str, list[str]], jobs: int
) -> list[dict[str, Any]]:
    """One row per launcher of the grid ``python train.py -m <args> <launcher>``: wall and training time, peak
    memory, and the members' largest metric differences from the basic launcher's jobs (all must complete)."""
    measured: dict[str, dict[str, Any]] = {}
    for launcher, launcher_args in launchers.items():
        sweep = Path(tmp) / re.sub(r"[^A-Za-z0-9-]+", "_", f"{model}-{kind}-{launcher}")
        marks = Path(tmp) / f"{sweep.name}-marks.jsonl"
        run_args = [*args, *launcher_args, f"hydra.sweep.dir={sweep}", f"paths.log_dir={tmp}"]
        run_args += [
            "trainer.enable_progress_bar=false",
            "+callbacks.wall_clock._target_=probes.WallClockMarks",
            f"+callbacks.wall_clock.path={marks}",
        ]
        wall, peak, output = run_grid(run_args)
        metrics = metrics_of(sweep)
        if len(metrics) != jobs or any(m["status"] != "completed" for m in metrics.values()):
            raise RuntimeError(f"{sweep}: not every job completed")
        measured[launcher] = {
            "wall_s": wall,
            "fit_s": training_seconds(output, marks),
            "peak_mib": peak / 2**20,
            "peak_gpu_mib": gpu_peak_mib(marks),
            "metrics": metrics,
        }
        print(f"{model} {kind} {launcher}: {wall:.1f} s, {peak / 2**20:.0f} MiB", flush=True)
    basic = measured["basic"]
    for launcher in (name for name in EXACT if name in measured):
        differ = [key for key in ("val/acc_best", "test/nll")
                  if largest_difference(measured[launcher]["metrics"], basic["metrics"], key) > 0]  # fmt: skip
        if differ:
            raise RuntimeError(f"{model} {kind}: {launcher} trained other models than the basic launcher ({differ})")
    return [
        {
            "model": model,
            "jobs": kind,
            "launcher": launcher,
            "wall_s": result["wall_s"],
            "peak_mib": result["peak_mib"],
            "peak_gpu_mib": result["peak_gpu_mib"],
            "wall_vs_basic": result["wall_s"] / basic["wall_s"],
            "fit_s": result["fit_s"],
            "fit_vs_basic": result["fit_s"] / basic["fit_s"],
            "val_acc_best_max_diff": None
            if result is basic
            else largest_difference(result["metrics"], basic["metrics"], "val/acc_best"),
            "test_nll_max_diff": None
            if result is basic
            else largest_difference(result["metrics"], basic["metrics"], "test/nll"),
        }
        for launcher, result in measured.items()
    ]


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run(size: str = "full") -> dict[str, Any]:
    epochs = {"full": 10, "quick": 2, "smoke": 1}[size]
    grid = ["smoothing=none,gamma", "seed=0"] if size == "smoke" else GRID
    jobs = math.prod(len(override.split("=", 1)[1].split(",")) for override in grid)  # the grid's job count
    common = ["-m", *grid, f"trainer.max_epochs={epochs}"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fused-") as tmp:
        if size == "smoke":  # the GPU grid's command line alone, on the CPU, tiny (the digits grids: the same code)
            gpu_case = "run on the CPU at the smoke size (tiny: 256 training images, ResNet-8, metrics alone)"
            gpu_args = [*common, *GPU_GRID_ARGS, *SMOKE_GPU_GRID, *JOBS["metrics alone"], "trainer.accelerator=cpu"]
            model = "ResNet-8 · synthetic 32x32x3, CPU"
            rows += measure_grid(tmp, model, gpu_args, "metrics alone", GPU_LAUNCHERS, jobs)
        else:
            for model, model_args in MODELS.items():
                for kind, kind_args in JOBS.items():
                    args = [*common, *model_args, *kind_args, "trainer.accelerator=cpu"]  # the goals are the CPU's
                    rows += measure_grid(tmp, model, args, kind, LAUNCHERS, jobs)
            if cuda_available():
                gpu_case = "measured"
                gpu_args = [*common, *GPU_GRID_ARGS, "trainer.accelerator=gpu", "trainer.devices=1"]
                rows += measure_grid(tmp, f"{GPU_MODEL}, GPU", gpu_args, "defaults", GPU_LAUNCHERS, jobs)
            else:
                gpu_case = "not run: no CUDA device on this machine (torch.cuda.is_available() is False)"
    return {
        "title": "Fused sweeps: a 9-job grid, wall time and peak memory by launcher",
        "goal": (
            "MLP fused <= 0.3x the basic launcher's wall time; ResNet-8 fused no slower than basic; "
            f"with a GPU, {GPU_MODEL} fused <= {GPU_GOAL}x basic"
        ),
        "grid": grid,
        "epochs": epochs,
        "command": "python train.py -m "
        + " ".join(grid)
        + f" model=... trainer.max_epochs={epochs} trainer.accelerator=cpu <launcher>",
        "gpu_case": gpu_case,
        "gpu_command": " ".join(["python train.py -m", *grid, *GPU_GRID_ARGS, f"trainer.max_epochs={epochs}"])
        + " trainer.accelerator=gpu trainer.devices=1 <launcher>",
        "rows": rows,
    }


def main() -> None:
    benchmark_main("fused", run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()

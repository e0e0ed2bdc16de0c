"""Benchmark 5: start-up. ``python train.py --help``, and the time from launching ``python train.py`` to its first
training step, vs a plain PyTorch script that does the same (import torch, read the digits file as the pipeline
reads it, build the ResNet, first step: ``plain_first_step.py``) and vs ``python -c "import torch"``; and the floor
that Lightning sets: ``python -c "import pytorch_lightning"`` alone, launch to the end of the import (it imports
torchmetrics, which imports torchvision), against the plain script's launch -> first step, alternated with it.

The first training step is stamped by ``probes.WallClockMarks``, added to the run's callbacks from the
command line, so the measured run is the real CLI with its defaults (W&B offline logger and all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import BENCH_DIR, REPO_ROOT, alternate, benchmark_main, median, ratio

TINY_RUN = ["model=resnet_v1", "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1"]
# At the smoke size (numbers that mean nothing, tests/test_bench.py) a run without W&B and figures: the same code
# of the benchmark, a few seconds less of the suite.
SMOKE_RUN = ["logger=none", "figures=false"]


def bench_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}


def run_process(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=REPO_ROOT, env=bench_env(), capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed, done


def marks_overrides(marks_file: Path, output_root: Path) -> list[str]:
    return [
        "+callbacks.wall_clock._target_=probes.WallClockMarks",
        f"+callbacks.wall_clock.path={marks_file}",
        f"paths.log_dir={output_root}",
    ]


def time_to_first_step_pipeline(extra: tuple[str, ...] = ()) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        marks = Path(tmp) / "marks.jsonl"
        launched = time.time()
        run_process([sys.executable, "train.py", *TINY_RUN, *extra, *marks_overrides(marks, Path(tmp))])
        first = json.loads(marks.read_text().splitlines()[0])["first_train_step"]
    return first - launched


def time_to_first_step_plain() -> float:
    launched = time.time()
    _, done = run_process([sys.executable, str(BENCH_DIR / "plain_first_step.py")])
    line = next(x for x in done.stdout.splitlines() if x.startswith("first_train_step"))
    return float(line.split()[1]) - launched


def time_to_lightning_imported() -> float:
    """From launch to the end of ``import pytorch_lightning`` (the process's exit left out, as the plain script's
    is: both stop the clock at a time the process prints)."""
    launched = time.time()
    _, done = run_process([sys.executable, "-c", "import time, pytorch_lightning; print(time.time())"])
    return float(done.stdout.split()[-1]) - launched


def comparison(measure: str, ours: list[float], baseline: list[float], **raw: list[float]) -> dict[str, Any]:
    """One row of the table: the medians of ``ours`` and ``baseline`` (seconds), their ratio and the samples."""
    return {
        "measure": measure,
        "ours_s": median(ours),
        "baseline_s": median(baseline),
        "ratio": ratio(median(ours), median(baseline)),
        "raw_ours": ours,
        "raw_baseline": baseline,
        **raw,
    }


def run(size: str = "full") -> dict[str, Any]:
    repetitions = {"full": 3, "quick": 2, "smoke": 1}[size]
    full = size != "smoke"  # smoke: the first-step row alone (the others time processes the same way)
    rows = []
    if full:
        help_s, import_s = alternate(
            lambda: run_process([sys.executable, "train.py", "--help"])[0],
            lambda: run_process([sys.executable, "-c", "import torch"])[0],
            repetitions,
        )
        rows.append(comparison("python train.py --help vs python -c 'import torch'", help_s, import_s))
    extra = () if full else tuple(SMOKE_RUN)
    first_ours, first_plain = alternate(
        lambda: time_to_first_step_pipeline(extra), time_to_first_step_plain, repetitions
    )
    rows.append(comparison("launch -> first training step: train.py vs plain script", first_ours, first_plain))
    if full:
        lightning_s, plain_s = alternate(time_to_lightning_imported, time_to_first_step_plain, repetitions)
        measure = (
            "floor: python -c 'import pytorch_lightning' (torch, torchmetrics, torchvision), to the import's end, vs "
            "the plain script's launch -> first step"
        )
        rows.append(comparison(measure, lightning_s, plain_s))
    goal = "launch -> first training step <= 1.3x the plain script"
    return {"title": "Start-up, seconds (wall clock of fresh processes)", "goal": goal, "rows": rows}


def main() -> None:
    benchmark_main("startup", run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()

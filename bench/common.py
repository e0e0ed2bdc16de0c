"""Shared helpers of the benchmarks: the composed training config, timing, machine facts, result files.

Every benchmark module has ``run(size: str) -> dict`` and writes ``bench/results/<name>.json``; the dict
holds ``rows`` (one per comparison, each with ``ours_s``, ``baseline_s`` and ``ratio``) so that
``run_all.py`` can render ``bench/RESULTS.md`` from the JSON files alone.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

# full: the sizes RESULTS.md reports; quick: fewer repetitions, for debugging a benchmark; smoke: the smallest
# sizes and one repetition, only to show that a benchmark runs to the end (tests/test_bench.py runs every one
# so; its numbers mean nothing).
SIZES = ("full", "quick", "smoke")

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# One torch (OpenMP) thread everywhere, ours and baseline alike. This 2-core machine is shared: with two
# intra-op threads, a ResNet-20 step took 2-7 s instead of 1.1-1.5 s whenever another process held a core
# (each parallel region waits for its descheduled thread), which made every ratio a measure of the load.
BENCH_THREADS = 1
os.environ.setdefault("OMP_NUM_THREADS", str(BENCH_THREADS))


def use_bench_threads() -> None:
    import torch

    torch.set_num_threads(BENCH_THREADS)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def ratio(ours: float, baseline: float) -> float:
    return float(ours / baseline) if baseline > 0 else float("nan")


def time_call(fn: Callable[[], Any], sync: Callable[[], None] | None = None) -> float:
    """Wall time of one ``fn()`` call in seconds (after ``sync`` for asynchronous devices)."""
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start


def alternate(
    ours: Callable[[], float], baseline: Callable[[], float], repetitions: int
) -> tuple[list[float], list[float]]:
    """Run ``ours`` and ``baseline`` alternately ``repetitions`` times (the order flips each round, so a
    slow drift of the machine's load hits both alike); each returns its own measured seconds."""
    ours_s: list[float] = []
    baseline_s: list[float] = []
    for rep in range(repetitions):
        pair = [(ours, ours_s), (baseline, baseline_s)]
        for fn, sink in pair if rep % 2 == 0 else reversed(pair):
            sink.append(fn())
    return ours_s, baseline_s


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return {
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1min": round(load, 2),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str:
    """The short commit, with ``+changes`` when files other than the benchmark results differ from it."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        outside_results = ["--", ".", ":!bench/results", ":!bench/RESULTS.md"]
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", *outside_results],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        commit = out.stdout.strip() or "unknown"
        return commit + ("+changes" if status.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_result(name: str, result: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``<results_dir>/<name>.json`` (with the machine's facts) and print a short table."""
    results_dir.mkdir(parents=True, exist_ok=True)
    result = {"name": name, "machine": machine_info(), **result}
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print_rows(name, result.get("rows", []))
    print(f"wrote {path}", flush=True)
    return path


def size_arguments(parser: argparse.ArgumentParser) -> None:
    """``--size`` (``--quick`` for ``--size quick``) and ``--results-dir``, for ``run_all.py`` and each benchmark."""
    parser.add_argument("--size", choices=SIZES, default="full", help="full (default), quick or smoke (see common.py)")
    parser.add_argument("--quick", action="store_const", const="quick", dest="size", help="--size quick")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON results go")


def benchmark_main(name: str, run: Callable[..., dict[str, Any]], description: str) -> dict[str, Any]:
    """The command line of one benchmark module: ``python bench/bench_<name>.py [--size S] [--results-dir D]``;
    returns the result."""
    parser = argparse.ArgumentParser(description=description)
    size_arguments(parser)
    args = parser.parse_args()
    result = {**run(size=args.size), "size": args.size}
    write_result(name, result, args.results_dir)
    return result


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n== {title} ==")
    for row in rows:
        parts = [f"{k}={_fmt(v)}" for k, v in row.items() if not isinstance(v, (list, dict))]
        print("  " + "  ".join(parts))
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)

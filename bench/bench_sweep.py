"""Benchmark 4: sweep overhead. The wall time of a 5-job multirun of tiny runs (``python train.py -m
seed=0,1,2,3,4``, Hydra's default launcher, the default W&B offline logger) minus the jobs' own training
time (``fit``, stamped inside each job by ``probes.WallClockMarks``), divided by 5: the cost per job of
everything but training (Python, imports, Hydra, data set-up, Lightning, W&B, and the final validation and
test of the best checkpoint with their reliability diagrams and temperature scaling, shown on their own).
A 1-job multirun (``-m seed=0``) is measured the same way, alternated with it, and the difference of each pair gives
what each job after the first costs (the process's start-up left out).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_startup import SMOKE_RUN, marks_overrides, run_process
from common import benchmark_main, median

JOBS = 5
GOAL = "<= 1.5 s per job"
TINY_RUN = ["model=mlp", "trainer.max_epochs=2"]


def overhead(multirun: bool, jobs: int = JOBS, extra: Sequence[str] = ()) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        marks_file = Path(tmp) / "marks.jsonl"
        args = [sys.executable, "train.py", *(["-m"] if multirun else []), *TINY_RUN, *extra]
        args += marks_overrides(marks_file, Path(tmp))
        if multirun:
            args.append("seed=" + ",".join(str(s) for s in range(jobs)))
        wall, _ = run_process(args)
        marks = [json.loads(line) for line in marks_file.read_text().splitlines()]
    work = sum(m["fit_end"] - m["fit_start"] for m in marks)
    evaluation = sum(m["test_end"] - m["fit_end"] for m in marks)
    return {
        "wall_s": wall,
        "jobs": len(marks),
        "work_s": work,
        "evaluation_s": evaluation,
        "overhead_per_job_s": (wall - work) / max(len(marks), 1),
    }


def row(measure: str, samples: list[dict[str, float]], goal: bool) -> dict[str, Any]:
    keys = ("wall_s", "work_s", "evaluation_s", "overhead_per_job_s")
    medians = {key: median([sample[key] for sample in samples]) for key in keys}
    return {"measure": measure, "jobs": samples[0]["jobs"], **medians, **({"goal": GOAL} if goal else {}),
            "raw": samples}  # fmt: skip


def run(size: str = "full") -> dict[str, Any]:
    repetitions = 3 if size == "full" else 1
    jobs = 2 if size == "smoke" else JOBS
    extra = SMOKE_RUN if size == "smoke" else ()
    many, one, added = [], [], []
    for _ in range(repetitions):  # alternated, so that each pair is measured in the same minute
        many.append(overhead(True, jobs, extra))
        if size != "smoke":  # smoke: the multirun alone (the 1-job one is the same code)
            one.append(overhead(True, 1, extra))
            added.append(added_jobs(many[-1], one[-1]))
    rows = [row(f"{jobs}-job multirun", many, goal=True)]
    if one:
        rows.append(row("1-job multirun", one, goal=False))
        rows.append(row(f"each added job ({jobs}-job less 1-job multirun, pair by pair)", added, goal=False))
    return {"title": "Sweep overhead per job, seconds", "goal": GOAL, "tiny_run": TINY_RUN, "rows": rows}


def added_jobs(multirun: dict[str, float], single: dict[str, float]) -> dict[str, float]:
    """What each job after the first adds: a multirun less a 1-job multirun (the same command, measured beside it),
    per added job. The start-up of the process (Python, imports, Hydra), paid once per sweep, is left out: the
    goal counts it in each job's share, so it applies to the multirun's row, not to this one."""
    added = multirun["jobs"] - single["jobs"]
    rest = (multirun["wall_s"] - multirun["work_s"]) - (single["wall_s"] - single["work_s"])
    return {
        "jobs": added,
        "wall_s": multirun["wall_s"] - single["wall_s"],
        "work_s": multirun["work_s"] - single["work_s"],
        "evaluation_s": multirun["evaluation_s"] - single["evaluation_s"],
        "overhead_per_job_s": rest / added,
    }


def main() -> None:
    benchmark_main("sweep", run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()

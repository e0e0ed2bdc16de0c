"""Benchmark 4: sweep overhead. The wall time of a 5-job multirun of tiny runs (``python train.py -m
seed=0,1,2,3,4``, Hydra's default launcher, the default W&B offline logger) minus the jobs' own training
time (``fit``, stamped inside each job by ``probes.WallClockMarks``), divided by 5: the cost per job of
everything but training (Python, imports, Hydra, data set-up, Lightning, W&B, and the final validation and
test of the best checkpoint with their reliability diagrams and temperature scaling, shown on their own).
A single run (``python train.py``, one job) is measured the same way, and the difference of the two gives what each
job after the first costs (the process's start-up left out).
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


def run(size: str = "full") -> dict[str, Any]:
    repetitions = 3 if size == "full" else 1
    jobs = 2 if size == "smoke" else JOBS
    rows = []
    for multirun in (True,) if size == "smoke" else (True, False):  # smoke: the single run is the same code
        samples = [overhead(multirun, jobs, SMOKE_RUN if size == "smoke" else ()) for _ in range(repetitions)]
        rows.append(
            {
                "measure": f"{jobs}-job multirun" if multirun else "single run",
                "jobs": samples[0]["jobs"],
                "wall_s": median([s["wall_s"] for s in samples]),
                "work_s": median([s["work_s"] for s in samples]),
                "evaluation_s": median([s["evaluation_s"] for s in samples]),
                "overhead_per_job_s": median([s["overhead_per_job_s"] for s in samples]),
                "goal": "<= 1.5 s per job",
                "raw": samples,
            }
        )
    if len(rows) == 2:
        rows.append(added_jobs(*rows))
    return {"title": "Sweep overhead per job, seconds", "goal": "<= 1.5 s per job", "tiny_run": TINY_RUN, "rows": rows}


def added_jobs(multirun: dict[str, Any], single: dict[str, Any]) -> dict[str, Any]:
    """What each job after the first adds: the multirun less the single run, per added job. The start-up of the
    process (Python, imports, Hydra), paid once per sweep, is left out; the goal above counts it in each job's share."""
    added = multirun["jobs"] - single["jobs"]
    rest = (multirun["wall_s"] - multirun["work_s"]) - (single["wall_s"] - single["work_s"])
    return {
        "measure": f"each added job ({multirun['measure']} less the single run)",
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

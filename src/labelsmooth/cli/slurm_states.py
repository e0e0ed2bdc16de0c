"""``sacct``'s answer from ``squeue``, for a SLURM cluster that keeps no job accounting.

submitit learns the state of a sweep's SLURM jobs from ``sacct -o JobID,State,NodeList --parsable2``. Without
accounting ``sacct`` fails, and a job that ends without writing its result (cancelled, killed at its time limit,
its node lost) is never seen to end: the sweep waits for it forever. ``python -m labelsmooth.cli.slurm_states
<job ids>`` prints what ``sacct`` would: the state ``squeue`` shows for a job still queued or running, and
``LEFT_QUEUE`` (an ended state to submitit) for one that is no longer in the queue.
"""

from __future__ import annotations

import re
import subprocess
import sys

ARRAY_RANGE = re.compile(r"^(\d+)_\[([\d,\-%]+)\]$")


def queued_states(squeue_output: str) -> dict[str, tuple[str, str]]:
    """Job id (``123``, ``123_4``) → (state, node list) from ``squeue -h -o %i|%T|%N`` lines; a pending array range
    (``123_[0-3,5]``) gives each of its tasks."""
    states: dict[str, tuple[str, str]] = {}
    for line in squeue_output.splitlines():
        job_id, state, nodes = (line.split("|") + ["", ""])[:3]
        match = ARRAY_RANGE.match(job_id.strip())
        if not match:
            states[job_id.strip()] = (state.strip(), nodes.strip())
            continue
        for part in match.group(2).split("%")[0].split(","):
            first, _, last = part.partition("-")
            for index in range(int(first), int(last or first) + 1):
                states[f"{match.group(1)}_{index}"] = (state.strip(), nodes.strip())
    return states


def sacct_lines(job_ids: list[str], states: dict[str, tuple[str, str]]) -> list[str]:
    """``sacct --parsable2`` lines for ``job_ids``: their queued state, or ``LEFT_QUEUE``."""
    lines = ["JobID|State|NodeList"]
    for job_id in job_ids:
        state, nodes = states.get(job_id, states.get(job_id.split("_")[0], ("LEFT_QUEUE", "")))
        lines.append(f"{job_id}|{state}|{nodes}")
    return lines


def main() -> None:
    queue = subprocess.run(["squeue", "-h", "-o", "%i|%T|%N"], capture_output=True, text=True, check=True).stdout
    print("\n".join(sacct_lines(sys.argv[1:], queued_states(queue))))


if __name__ == "__main__":
    main()

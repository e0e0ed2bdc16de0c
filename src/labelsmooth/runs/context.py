"""What the Hydra runtime knows about one job, as plain values, so that everything below the entry points can be
used and tested without Hydra's runtime (``labelsmooth.cli.context`` fills it from ``HydraConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunContext:
    """One job: its output directory, config-group choices and place in a multirun."""

    output_dir: Path
    choices: dict[str, str] = field(default_factory=dict)
    multirun: bool = False
    sweep_dir: str | None = None
    job_num: int | None = None
    override_dirname: str = ""
    overrides: tuple[str, ...] = ()  # the job's command-line overrides (Hydra's overrides.task)
    parallel: bool = False  # a job of a sweep whose jobs run side by side on this machine (joblib, parallel)

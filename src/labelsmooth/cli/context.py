"""The job's ``RunContext`` from Hydra's runtime (only the entry points touch ``HydraConfig``)."""

from __future__ import annotations

from pathlib import Path

from labelsmooth.runs.context import RunContext


def context_from_hydra() -> RunContext:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    return RunContext(
        output_dir=Path(hydra_cfg.runtime.output_dir),
        choices={k: str(v) for k, v in hydra_cfg.runtime.choices.items() if v is not None},
        multirun=multirun,
        sweep_dir=str(hydra_cfg.sweep.dir) if multirun else None,
        job_num=int(hydra_cfg.job.num) if multirun else None,
        override_dirname=str(hydra_cfg.job.override_dirname or ""),
        overrides=tuple(str(o) for o in hydra_cfg.overrides.task),
        parallel=multirun and "joblib" in str(hydra_cfg.launcher.get("_target_", "")).lower(),
    )

"""The job's ``RunContext`` from Hydra's runtime (only the entry points touch ``HydraConfig``)."""

from __future__ import annotations

from pathlib import Path

from labelsmooth.errors import ConfigurationError
from labelsmooth.runs.context import RunContext


def context_from_hydra() -> RunContext:
    """The job's context; an override whose interpolation cannot be resolved (``seed=${nonexistent}``, an unset
    ``${oc.env:NAME}``) is a ``ConfigurationError`` naming it (Hydra's job name for the directory resolves it)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        overrides = tuple(str(o) for o in hydra_cfg.overrides.task)
        override_dirname = str(hydra_cfg.job.override_dirname or "")
    except InterpolationResolutionError as error:
        written = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
        unresolved = " ".join(str(o) for o in written if "${" in str(o))
        raise ConfigurationError(f"{unresolved}: cannot be resolved ({str(error).splitlines()[0]})") from None
    return RunContext(
        output_dir=Path(hydra_cfg.runtime.output_dir),
        choices={k: str(v) for k, v in hydra_cfg.runtime.choices.items() if v is not None},
        multirun=multirun,
        sweep_dir=str(hydra_cfg.sweep.dir) if multirun else None,
        job_num=int(hydra_cfg.job.num) if multirun else None,
        override_dirname=override_dirname,
        overrides=overrides,
        parallel=multirun and "joblib" in str(hydra_cfg.launcher.get("_target_", "")).lower(),
    )


def job_context() -> RunContext:
    """``context_from_hydra`` under the app's error policy (``labelsmooth.cli.errors.run_app``): an override that
    cannot be resolved ends the job in one line, as any bad input does."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from labelsmooth.cli.errors import run_app

    return run_app(context_from_hydra, HydraConfig.get().mode == RunMode.MULTIRUN, resumable=False)

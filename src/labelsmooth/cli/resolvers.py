"""OmegaConf resolvers that ``conf/`` uses, registered by the entry points before Hydra composes a config:
``ls_run_dir`` (the run directory, or the run being resumed) and ``ls_gpus_per_job`` (the GPUs a SLURM job
reserves: none on CPU). Kept out of the package's ``__init__`` so that ``labelsmooth.smoothing`` and the
other leaves import without OmegaConf."""

from __future__ import annotations


def register_resolvers() -> None:
    """Register the resolvers (idempotent)."""
    from omegaconf import OmegaConf

    from labelsmooth.cli.checks import gpus_per_job
    from labelsmooth.runs.resume import resolve_run_dir

    if not OmegaConf.has_resolver("ls_run_dir"):
        OmegaConf.register_new_resolver("ls_run_dir", resolve_run_dir)
    if not OmegaConf.has_resolver("ls_gpus_per_job"):
        OmegaConf.register_new_resolver("ls_gpus_per_job", gpus_per_job)

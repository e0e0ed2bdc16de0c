"""OmegaConf resolvers that ``conf/`` uses, registered by the entry points before Hydra composes a config:
``ls_run_dir`` (the run directory, or the run being resumed) and the SLURM launcher's resources that follow the
job (``ls_gpus_per_job``: none on CPU; ``ls_slurm_tasks_per_job``, ``ls_slurm_cpus_per_task``,
``ls_slurm_mem_gb``). Kept out of the package's ``__init__`` so that ``labelsmooth.smoothing`` and the other
leaves import without OmegaConf."""

from __future__ import annotations


def register_resolvers() -> None:
    """Register the resolvers (idempotent)."""
    from omegaconf import OmegaConf

    from labelsmooth.cli import checks
    from labelsmooth.runs.resume import resolve_run_dir

    resolvers = {
        "ls_run_dir": resolve_run_dir,
        "ls_gpus_per_job": checks.gpus_per_job,
        "ls_slurm_tasks_per_job": checks.slurm_tasks_per_job,
        "ls_slurm_cpus_per_task": checks.slurm_cpus_per_task,
        "ls_slurm_mem_gb": checks.slurm_mem_gb,
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)

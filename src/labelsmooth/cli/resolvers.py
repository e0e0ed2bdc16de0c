"""OmegaConf resolvers that ``conf/`` uses, registered by the entry points before Hydra composes a config:
``ls_run_dir`` (the run directory, or the run being resumed), ``ls_fresh_dir`` (a sweep's or an evaluation's directory;
both claim a directory of their own) and the SLURM launcher's resources that follow the
job (``ls_gpus_per_job``: none on CPU; ``ls_slurm_tasks_per_job``, ``ls_slurm_cpus_per_task``,
``ls_slurm_mem_gb``). Kept out of the package's ``__init__`` so that ``labelsmooth.smoothing`` and the other
leaves import without OmegaConf."""

from __future__ import annotations


def register_resolvers() -> None:
    """Register the resolvers (idempotent)."""
    from omegaconf import OmegaConf

    from labelsmooth.cli import devices
    from labelsmooth.runs.resume import claim_fresh_directory, resolve_run_dir

    claims_a_directory = {"ls_run_dir": resolve_run_dir, "ls_fresh_dir": claim_fresh_directory}
    for name, resolver in claims_a_directory.items():  # resolved once: the same directory each time it is read
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=True)
    resolvers = {
        "ls_gpus_per_job": devices.gpus_per_job,
        "ls_slurm_tasks_per_job": devices.slurm_tasks_per_job,
        "ls_slurm_cpus_per_task": devices.slurm_cpus_per_task,
        "ls_slurm_mem_gb": devices.slurm_mem_gb,
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)

"""labelsmooth: label smoothing in image classification with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"


def register_resolvers() -> None:
    """OmegaConf resolvers used by ``conf/``: ``ls_run_dir`` (the run directory, or the run being resumed) and
    ``ls_gpus_per_job`` (the GPUs a SLURM job reserves: none on CPU)."""
    from omegaconf import OmegaConf

    from labelsmooth.resume import resolve_run_dir
    from labelsmooth.sweeps import gpus_per_job

    if not OmegaConf.has_resolver("ls_run_dir"):
        OmegaConf.register_new_resolver("ls_run_dir", resolve_run_dir)
    if not OmegaConf.has_resolver("ls_gpus_per_job"):
        OmegaConf.register_new_resolver("ls_gpus_per_job", gpus_per_job)


register_resolvers()

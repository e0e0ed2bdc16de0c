"""Device counting that the checks and the launchers share: the devices ``trainer.devices`` names, what a SLURM job
of a sweep reserves (GPUs, tasks, CPUs, memory: the ``ls_*`` resolvers of ``conf/hydra/launcher/slurm.yaml``), how
often SLURM requeued it, and the GPU of a job of a sweep run side by side on one machine."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def explicit_device_count(devices: object) -> int | None:
    """The number of devices ``trainer.devices`` names (a count, a list of ids, ``"0,1"``, ``"2"``); None for
    ``auto`` and ``-1`` (every visible device, known only on the machine that runs the job)."""
    if isinstance(devices, int) and not isinstance(devices, bool):
        return devices if devices >= 0 else None
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices)
    text = str(devices).strip()
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    return int(text) if text.isdigit() else None


def gpus_per_job(accelerator: object, devices: object) -> int:
    """GPUs a launcher should reserve for one job (``hydra/launcher=slurm``: ``gpus_per_node``): none for
    ``trainer.accelerator=cpu``, else the count ``trainer.devices`` names (1 for ``auto``)."""
    return 0 if str(accelerator).lower() == "cpu" else max(explicit_device_count(devices) or 1, 1)


def starts_a_process_per_device(strategy: object) -> bool:
    """Whether ``trainer.strategy`` trains on several devices with a process per device that Lightning starts by
    launching the script again (or that SLURM starts as tasks): DDP and its relatives, and ``auto``, which
    Lightning resolves to DDP for more than one device; not the ``spawn`` / ``fork`` / ``notebook`` variants, whose
    processes are forked or spawned from the running one."""
    name = str(strategy).lower()
    launched = name == "auto" or name.startswith(("ddp", "fsdp", "deepspeed"))
    return launched and not any(kind in name for kind in ("spawn", "fork", "notebook"))


def slurm_tasks_per_job(strategy: object, devices: object) -> int:
    """SLURM tasks per sweep job (``hydra/launcher=slurm``: ``tasks_per_node``): one process per device where the
    strategy runs one (``starts_a_process_per_device``; SLURM starts them, Lightning's SLURM environment wires
    them), else 1."""
    return max(explicit_device_count(devices) or 1, 1) if starts_a_process_per_device(strategy) else 1


def slurm_cpus_per_task(num_workers: object) -> int:
    """CPUs per SLURM task: the training process and its data loader workers (``dataset.num_workers``)."""
    return 1 + max(int(num_workers or 0), 0)  # type: ignore[call-overload]


def slurm_mem_gb(num_workers: object, tasks: object) -> int:
    """Memory per SLURM node (``mem_gb``, submitit's ``--mem``): 4 GB per CPU of each task."""
    return 4 * slurm_cpus_per_task(num_workers) * max(int(tasks or 1), 1)  # type: ignore[call-overload]


def slurm_restarts() -> int:
    """How often SLURM requeued this job (``SLURM_RESTART_COUNT``; 0 outside SLURM or on its first start): submitit
    requeues one signalled before its time limit (``signal_delay_s``, ``max_num_timeout`` times) or preempted."""
    count = os.environ.get("SLURM_RESTART_COUNT", "0")
    return int(count) if count.isdigit() else 0


def slurm_tasks() -> int | None:
    """The number of processes SLURM started for this job step (``SLURM_NTASKS`` under ``srun``), or None."""
    tasks = os.environ.get("SLURM_NTASKS") if os.environ.get("SLURM_STEP_ID") is not None else None
    return int(tasks) if tasks and tasks.isdigit() else None


def gpu_of_parallel_job(trainer_cfg: DictConfig, job_num: int | None, gpu_count: int) -> list[int] | None:
    """The GPU of one job of a sweep run side by side on one machine (``hydra/launcher=joblib`` or ``parallel``):
    job k on GPU k mod n, as ``trainer.devices=[k mod n]``; None (the config's own devices) for a job that asks
    for other than ``trainer.devices=1`` (a list names its GPUs), trains on the CPU, or where there is no GPU.
    The device index, not ``CUDA_VISIBLE_DEVICES``: joblib reuses its worker processes, where CUDA is set up by the
    first job."""
    if job_num is None or gpu_count < 1 or str(trainer_cfg.get("accelerator", "auto")).lower() == "cpu":
        return None
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, bool) or devices != 1:  # a list names its GPUs; other counts are the user's
        return None
    return [job_num % gpu_count]


@contextlib.contextmanager
def held_gpu_of_parallel_job(
    trainer_cfg: DictConfig, job_num: int | None, gpu_count: int, sweep_dir: str | None
) -> Iterator[list[int] | None]:
    """``gpu_of_parallel_job``, made one job per GPU: joblib hands the next job to whichever worker is free, so
    jobs k and k + n overlapped on GPU k mod n while another GPU idled. The job takes the first GPU from k mod n on
    that no other job of the sweep holds (a lock in ``<sweep>/.gpus/``, held until the job ends); where every
    GPU is held (more jobs at once than GPUs) it shares GPU k mod n, as before."""
    from labelsmooth.runs.lock import first_free

    first = gpu_of_parallel_job(trainer_cfg, job_num, gpu_count)
    if first is None or sweep_dir is None:
        yield first
        return
    order = [(first[0] + step) % gpu_count for step in range(gpu_count)]
    with first_free(Path(sweep_dir) / ".gpus", [f"gpu{gpu}.lock" for gpu in order]) as free:
        yield first if free is None else [order[free]]


def requested_devices(trainer_cfg: DictConfig) -> int:
    count = explicit_device_count(trainer_cfg.get("devices", 1))
    if count is not None:
        return count
    import torch  # "auto" or -1: every visible accelerator

    return max(torch.cuda.device_count(), 1) if trainer_cfg.get("accelerator") != "cpu" else 1

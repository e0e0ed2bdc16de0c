"""Hydra's submitit SLURM launcher whose jobs get the resources of their own config (``hydra/launcher=slurm``).

``conf/hydra/launcher/slurm.yaml`` derives a job's resources from its config (``tasks_per_node`` from
``trainer.devices`` under DDP, its GPUs, ``1 + dataset.num_workers`` CPUs per task, memory). Hydra's
``SlurmLauncher`` resolves them once, from the sweep's base config, and submits every job with them, so in a sweep
over ``trainer.devices=1,2`` or ``dataset=digits,imagenet`` the jobs got the first configuration's resources (a
DDP job with too few tasks fails Lightning's check). Here each job's ``hydra.launcher`` is resolved on its own
config, the jobs with the same resources are one SLURM job array, and every array is submitted before any is
waited for. Written here because the plugin has no per-job parameters.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from omegaconf import OmegaConf

try:
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
except ImportError:  # the `sweep` extra (hydra-submitit-launcher) is not installed: Hydra imports this module anyway
    SlurmLauncher = object  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

INIT_KEYS = {"submitit_folder", "max_num_timeout"}  # the executor's, not a job's: as Hydra's launcher splits them


class PerJobResourcesSlurmLauncher(SlurmLauncher):
    """``SlurmLauncher`` that submits each group of jobs with equal resolved ``hydra.launcher`` settings as one
    array, with those settings."""

    def job_parameters(self, overrides: Sequence[str]) -> dict[str, Any]:
        """The job's ``hydra.launcher`` settings, resolved on its own config (``_target_`` left out)."""
        assert self.hydra_context is not None and self.config is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        settings = OmegaConf.to_container(config.hydra.launcher, resolve=True)
        assert isinstance(settings, dict)
        return {str(key): value for key, value in settings.items() if key != "_target_"}

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and len(job_overrides) > 0
        groups: dict[str, list[int]] = {}
        settings: dict[str, dict[str, Any]] = {}
        for offset, overrides in enumerate(job_overrides):
            parameters = self.job_parameters(overrides)
            key = json.dumps(parameters, sort_keys=True, default=str)
            groups.setdefault(key, []).append(offset)
            settings[key] = parameters
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
        queue_keys = set(OmegaConf.structured(BaseQueueConf).keys())
        jobs: dict[int, Any] = {}
        for key, offsets in groups.items():
            parameters = settings[key]
            cluster = self._EXECUTOR
            init = {f"{cluster}_{k}": v for k, v in parameters.items() if k in INIT_KEYS - {"submitit_folder"}}
            executor = submitit.AutoExecutor(folder=parameters["submitit_folder"], cluster=cluster, **init)
            executor.update_parameters(
                **{k if k in queue_keys else f"{cluster}_{k}": v for k, v in parameters.items() if k not in INIT_KEYS}
            )
            resources = ", ".join(f"{k}={parameters.get(k)}" for k in ("tasks_per_node", "gpus_per_node",
                                                                        "cpus_per_task", "mem_gb"))  # fmt: skip
            log.info("jobs %s: %s", ", ".join(str(initial_job_idx + o) for o in offsets), resources)
            arguments = []
            for offset in offsets:
                number = initial_job_idx + offset
                log.info("\t#%d : %s", number, " ".join(filter_overrides(job_overrides[offset])))
                arguments.append(
                    (list(job_overrides[offset]), "hydra.sweep.dir", number, f"job_id_for_{number}",
                     Singleton.get_state())
                )  # fmt: skip
            for offset, job in zip(offsets, executor.map_array(self, *zip(*arguments, strict=True)), strict=True):
                jobs[offset] = job
        return [jobs[offset].results()[0] for offset in range(len(job_overrides))]

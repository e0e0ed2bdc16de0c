"""Hydra's basic sweeper (the grid of the command line's lists), composing each job's config once
(``hydra/sweeper=compose_once``, the default in ``conf/hydra/default.yaml``).

Before it launches a batch, Hydra's ``BasicSweeper`` composes every job's config to check that all of them compose
(a bad value stops the sweep before any job runs); then its launcher composes each one again. With this project's
config tree a composition takes ~0.15 s on a small CPU, a tenth of what a short job costs besides its training.
Here the check keeps what it composed and the launcher (basic, fused) takes each job's config from it; a launcher
that runs jobs in other processes (joblib, SLURM) composes them there, as with Hydra's sweeper. Written here
because Hydra has no setting for it (its sweeper's comment: "can potentially allow disabling from the config").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_loader import ConfigLoader
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigSource
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig


class KeptSweepConfigs(ConfigLoader):
    """Hydra's ``ConfigLoader`` ``loader``, whose ``load_sweep_config`` hands out once each job config that
    ``keep`` composed (the launcher then owns it), and composes any other as ``loader`` does."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self.kept: dict[tuple[int, tuple[str, ...]], DictConfig] = {}

    def keep(self, master_config: DictConfig, batch: Sequence[Sequence[str]]) -> None:
        """Compose the config of every job of ``batch`` (raising as Hydra's check does) and keep them."""
        self.kept = {
            (id(master_config), tuple(job)): self.loader.load_sweep_config(master_config, list(job)) for job in batch
        }

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        kept = self.kept.pop((id(master_config), tuple(sweep_overrides)), None)
        return kept if kept is not None else self.loader.load_sweep_config(master_config, sweep_overrides)

    def __getstate__(self) -> dict[str, Any]:  # pickled to a job's process (joblib, SLURM): it composes there
        return {"loader": self.loader, "kept": {}}

    def load_configuration(
        self,
        config_name: str | None,
        overrides: list[str],
        run_mode: RunMode,
        from_shell: bool = True,
        validate_sweep_overrides: bool = True,
    ) -> DictConfig:
        return self.loader.load_configuration(config_name, overrides, run_mode, from_shell, validate_sweep_overrides)

    def get_search_path(self) -> ConfigSearchPath:
        return self.loader.get_search_path()

    def get_sources(self) -> list[ConfigSource]:
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> list[str]:
        return self.loader.list_groups(parent_name)

    def get_group_options(
        self,
        group_name: str,
        results_filter: ObjectType | None = ObjectType.CONFIG,
        config_name: str | None = None,
        overrides: list[str] | None = None,
    ) -> list[str]:
        return self.loader.get_group_options(group_name, results_filter, config_name, overrides)

    def compute_defaults_list(self, config_name: str | None, overrides: list[str], run_mode: RunMode) -> Any:
        return self.loader.compute_defaults_list(config_name, overrides, run_mode)


class ComposeOnceSweeper(BasicSweeper):
    """``BasicSweeper`` whose check of a batch keeps the composed configs for its launcher (``KeptSweepConfigs``)."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        configs = KeptSweepConfigs(hydra_context.config_loader)
        super().setup(
            hydra_context=HydraContext(config_loader=configs, callbacks=hydra_context.callbacks),
            task_function=task_function,
            config=config,
        )

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        assert self.hydra_context is not None and self.config is not None
        loader = self.hydra_context.config_loader
        assert isinstance(loader, KeptSweepConfigs)
        loader.keep(self.config, batch)

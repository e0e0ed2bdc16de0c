"""The fused launcher (``hydra/launcher=fused``): a sweep's jobs that differ only in strategy, seed and batch
mixing are trained as the members of one batched model, each member still a complete run of its own
(``labelsmooth.cli.fused`` does the work). It lives under ``hydra_plugins`` because Hydra instantiates launchers
only from there; nothing heavy is imported until a sweep launches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher


class FusedLauncher(Launcher):
    """``max_members``: the most jobs one group trains together (None: every fusable job of the group);
    ``batching``: ``vmap`` (one batched call per layer) or ``loop`` (each member's own calls, bit-exact)."""

    def __init__(self, max_members: int | None = None, batching: str = "loop") -> None:
        self.max_members, self.batching = max_members, batching
        self.config: Any = None
        self.hydra_context: Any = None
        self.task_function: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from labelsmooth.cli.fused import launch

        return launch(self, job_overrides, initial_job_idx)

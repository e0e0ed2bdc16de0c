"""hydra-optuna-sweeper's Optuna sweeper, ending a search in which no trial completed with one message.

The plugin asks Optuna for the best trial after the last one, and when every trial failed (a missing data set,
an impossible search range) Optuna answers with ``ValueError: No trials are completed yet`` and a traceback
through the plugin. ``FailureTolerantOptunaSweeper`` says what happened instead: every trial failed, where their
errors are, and that there is no best value; and it refuses, before any trial, a number of trials or of trials at
a time below 1 (with which the plugin runs no trial and then reports them all failed). It lives under
``hydra_plugins`` because Hydra instantiates sweepers only from there (``conf/hparams_search/*.yaml`` select it
with ``hydra.sweeper._target_``).
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.errors import CompactHydraException

log = logging.getLogger(__name__)

try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # the `sweep` extra (hydra-optuna-sweeper) is not installed
    OptunaSweeper = None


class NoTrialCompleted(CompactHydraException):
    """Every trial of an Optuna search failed: there is no best value to report."""


class InvalidSearch(CompactHydraException):
    """A setting of the search that cannot work (no trial would run): one line, before any trial."""


if OptunaSweeper is not None:

    class FailureTolerantOptunaSweeper(OptunaSweeper):
        """``OptunaSweeper`` whose study with no completed trial ends in ``NoTrialCompleted`` (exit code 1, one
        message) rather than Optuna's ``ValueError`` traceback."""

        def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
            self.sweep_dir = str(config.hydra.sweep.dir)
            self.sampler_config = config.hydra.sweeper.get("sampler")
            self.continues_its_sweep = bool(config.get("resume_sweep"))
            super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

        def reseed_for_a_kept_study(self) -> None:
            """A study kept in ``storage`` that already holds trials gets a sampler seeded ``seed + trials``: with
            the configured seed alone each run drew the same parameters as the first (TPE's start-up trials are
            random draws), training the same trials again. ``resume_sweep=true`` keeps the seed: it re-runs the
            interrupted search into its own directory, whose completed trials are then skipped."""
            import hydra
            import optuna

            impl, seed = self.sweeper, (self.sampler_config or {}).get("seed")
            if impl.storage is None or impl.study_name is None or seed is None or self.continues_its_sweep:
                return
            try:
                earlier = len(optuna.load_study(study_name=impl.study_name, storage=impl.storage).trials)
            except KeyError:  # no such study yet
                return
            if earlier:
                impl.sampler = hydra.utils.instantiate(self.sampler_config, seed=int(seed) + earlier)
                log.info(
                    "Study %s holds %d trials: its sampler is seeded %d + %d", impl.study_name, earlier, seed, earlier
                )

        def sweep(self, arguments: list[str]) -> None:
            counts = {"n_trials": self.sweeper.n_trials, "n_jobs": self.sweeper.n_jobs}  # 0 or less: no trial runs
            for key, value in counts.items():
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise InvalidSearch(f"hydra.sweeper.{key}={value!r} must be an integer >= 1")
            self.reseed_for_a_kept_study()
            try:
                return super().sweep(arguments)
            except ValueError as error:
                if "No trials are completed yet" not in str(error):
                    raise
                raise NoTrialCompleted(
                    f"No trial of the Optuna search completed: every trial failed (their errors are above, and in "
                    f"{self.sweep_dir}/<trial>/metrics.json), so there is no best value and no "
                    "optimization_results.yaml. Fix the error and run the search again."
                ) from None

"""The life of one run, shared by training and evaluation: the record that becomes ``metrics.json``, the logger,
the failure record, the W&B finish with the right exit code and the closing summary.

::

    with RunLifecycle(context, summary) as run:
        ...                              # build, train, test; run.logger = the logger once it exists
        run.complete()
    # metrics.json written (status completed, or failed with error_type and error), W&B run finished
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from labelsmooth.cli.errors import error_message, interruption_message, log_failure, root_cause
from labelsmooth.runs.context import RunContext
from labelsmooth.runs.files import remove_interrupted_writes, write_metrics_json
from labelsmooth.runs.provenance import code_record
from labelsmooth.runs.result_guard import (
    ResultKept,
    holds_a_run,
    keep_hydra_files,
    may_replace,
    recorded_overrides,
    restore_hydra_files,
)
from labelsmooth.tracking.console import print_run_summary
from labelsmooth.tracking.quiet import silence_library_noise
from labelsmooth.tracking.wandb_run import finish_wandb, redact_secrets

log = logging.getLogger(__name__)


def is_rank_zero() -> bool:
    from pytorch_lightning.utilities import rank_zero_only

    return rank_zero_only.rank == 0


def keep_hydra_copies(output_dir: Any) -> None:
    """``keep_hydra_files`` of a completed run; a failure to copy them (a full disk) is a warning: the run's result
    is written already."""
    try:
        keep_hydra_files(output_dir)
    except OSError as unwritten:
        log_failure(f".hydra/ files of the completed run not kept: {error_message(unwritten)}", to_console=True)


class RunLifecycle:
    """A context manager around one run that ends it the same way whatever happens.

    ``summary`` is the record so far (status ``running``), with the code that computes it
    (``labelsmooth.runs.provenance.code_record``); on leaving, a failure sets ``status: failed``,
    ``error_type`` and ``error`` (secrets redacted; an interruption says how to continue), ``metrics.json`` is
    written by rank 0 unless that would replace a completed result (``labelsmooth.runs.result_guard``), the W&B
    run is finished with exit code 0 or 1, and a completed run prints ``title`` and its metrics.
    ``failed_run_logger`` makes a logger for a job that failed before it had one (a sweep's W&B group then shows
    every job).
    """

    def __init__(
        self,
        context: RunContext,
        summary: dict[str, Any],
        title: str = "",
        summary_keys: tuple[str, ...] = (),
        failed_run_logger: Callable[[], Any] | None = None,
    ) -> None:
        self.context = context
        self.summary = {"status": "running", **summary, **code_record()}
        self.title = title
        self.summary_keys = summary_keys
        self.failed_run_logger = failed_run_logger
        self.logger: Any = None
        self.claimed = False  # until ``claim``: a failure leaves what an earlier run left in the directory
        self.earlier_run = False

    def __enter__(self) -> RunLifecycle:
        silence_library_noise()
        self.earlier_run = holds_a_run(self.context.output_dir)
        return self

    def claim(self) -> None:
        """The run takes its directory, its checks passed: its ``.hydra/`` files are kept (a command refused there
        later puts them back), and from here a failure is this run's to record in ``metrics.json``. Before, a
        failure in a directory that held an earlier run (a refused ``resume=``, a typo in a re-run) leaves that
        run's ``metrics.json`` and puts its ``.hydra/`` files back, so ``resume=true`` still finds it. The temporary
        files of writes a killed run left unfinished there are removed."""
        self.claimed = True
        if is_rank_zero():
            keep_hydra_files(self.context.output_dir)
            if removed := remove_interrupted_writes(self.context.output_dir):  # a killed run's, continued here
                log.info(
                    "Removed %d temporary file(s) of writes a killed process left unfinished (%.1f MB): %s",
                    len(removed), sum(removed.values()) / 1e6, ", ".join(path.name for path in removed),
                )  # fmt: skip

    def complete(self) -> None:
        self.summary["status"] = "completed"

    def _record_failure(self, error: BaseException) -> None:
        cause = root_cause(error)
        self.summary["status"] = "failed"
        self.summary["error_type"] = type(cause).__name__
        self.summary["error"] = redact_secrets(error_message(cause))
        if isinstance(cause, (KeyboardInterrupt, SystemExit)):
            self.summary["error_type"] = "Interrupted"
            self.summary["error"] = interruption_message(cause, self.context.multirun)
        log_failure(f"{self.summary['error_type']}: {self.summary['error']}", to_console=self.context.multirun)
        if self.logger is None and self.failed_run_logger is not None and isinstance(error, Exception):
            self.logger = self.failed_run_logger()

    def __exit__(self, error_type: type | None, error: BaseException | None, traceback: Any) -> bool:
        if error is not None:
            self._record_failure(error)
        elif self.summary["status"] != "completed":
            self.summary["status"] = "failed"
        refused_before_claim = error is not None and self.earlier_run and not self.claimed
        if refused_before_claim and not isinstance(error, ResultKept) and is_rank_zero():  # ResultKept put them back
            restore_hydra_files(self.context.output_dir, recorded_overrides(self.context.output_dir))
        keeps_other_result = isinstance(error, ResultKept) or refused_before_claim
        try:
            if is_rank_zero() and not keeps_other_result and may_replace(self.context.output_dir, self.summary):
                write_metrics_json(self.context.output_dir, self.summary)
                if self.summary["status"] == "completed":
                    keep_hydra_copies(self.context.output_dir)
        except OSError as unwritten:  # a full disk: the run's own error, if any, is the one to report
            if error is None:
                self._record_failure(unwritten)
                raise
            log_failure(f"metrics.json not written: {error_message(unwritten)}", to_console=True)
        finally:
            completed = self.summary["status"] == "completed"
            finish_wandb(self.logger, 0 if completed else 1, self.summary)
            if is_rank_zero() and completed:  # last, after W&B's run summary
                shown = (self.title, self.summary, self.context.output_dir, self.summary_keys)
                print_run_summary(*shown, table=not self.context.multirun)  # a sweep's jobs: their headlines
        return False

"""Silence the library messages that every run would print and that ask nothing of the user.

- Lightning's tip advertising the ``litlogger`` package, logged at the start of every ``fit`` / ``test``;
- torch's ``FutureWarning`` for the ``LeafSpec`` that Lightning's own ``_pytree`` helper constructs;
- Lightning's warning that ``srun`` is on the ``PATH`` but the process was not started by it, printed by every run
  on a SLURM login node, outside any SLURM job (this project's runs reach SLURM through ``hydra/launcher=slurm``,
  whose jobs SLURM starts). Inside a job (``SLURM_JOB_ID`` set) it stays: there a DDP run started without ``srun``
  would hang.

Everything else (Lightning's warnings about the user's set-up included) still shows.
"""

from __future__ import annotations

import logging
import os
import warnings

LIGHTNING_TIP_PREFIX = "💡 Tip:"
LEAFSPEC_WARNING = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
SRUN_WARNING = r"The `srun` command is available on your system but is not used"
LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


class _DropLightningTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LIGHTNING_TIP_PREFIX)


def silence_library_noise() -> None:
    """Install the filters (idempotent)."""
    warnings.filterwarnings("ignore", message=LEAFSPEC_WARNING, category=FutureWarning)
    if "SLURM_JOB_ID" not in os.environ:
        warnings.filterwarnings("ignore", message=SRUN_WARNING)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningTips) for f in logger.filters):
            logger.addFilter(_DropLightningTips())

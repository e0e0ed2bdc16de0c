"""A rich progress bar on interactive terminals, a quiet text one in logs and CI."""

from __future__ import annotations

import sys

from pytorch_lightning.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar


def progress_bar(refresh_rate: int = 1, non_interactive_refresh_rate: int = 50) -> ProgressBar:
    """``RichProgressBar`` when stdout is a terminal; otherwise a TQDM bar refreshed every
    ``non_interactive_refresh_rate`` steps, so log files are not flooded with redraws."""
    if sys.stdout.isatty():
        return RichProgressBar(refresh_rate=refresh_rate)
    return TQDMProgressBar(refresh_rate=non_interactive_refresh_rate)

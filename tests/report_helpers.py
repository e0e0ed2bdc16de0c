"""``make_report`` as the tests call it: without figures unless the test reads them (``plots=True``), since drawing
one takes about a second; the tests that read figures check them (tests/test_report.py, tests/test_sweeps.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from labelsmooth.report.build import Report
from labelsmooth.report.build import make_report as make_report_with_plots


def make_report(sweep_dirs: Sequence[str | os.PathLike], *args: Any, plots: bool = False, **kwargs: Any) -> Report:
    return make_report_with_plots(sweep_dirs, *args, plots=plots, **kwargs)

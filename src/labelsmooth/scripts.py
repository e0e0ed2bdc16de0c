"""The console scripts ``labelsmooth-train``, ``labelsmooth-eval`` and ``labelsmooth-report``.

``pip install labelsmooth`` installs the core (strategies and metrics) and these scripts; the apps behind them need
an extra. Without it a script says in one line which extra to install, instead of an import traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

# script -> (the app's "module:function", the extra it needs, the modules that extra brings)
APPS = {
    "labelsmooth-train": ("labelsmooth.cli.train:main", "train", ("hydra", "pytorch_lightning", "torchvision")),
    "labelsmooth-eval": ("labelsmooth.cli.evaluate:main", "train", ("hydra", "pytorch_lightning", "torchvision")),
    "labelsmooth-report": ("labelsmooth.report.cli:main", "report", ("yaml", "matplotlib")),
}


def launch(script: str) -> Any:
    """Run ``script``'s app, or exit 1 with one line naming the missing module and the extra to install."""
    target, extra, needed = APPS[script]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(
            f"{script} needs the '{extra}' extra (not installed: {', '.join(missing)}): "
            f"pip install 'labelsmooth[{extra}]'"
        )
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)()


def train() -> Any:
    return launch("labelsmooth-train")


def evaluate() -> Any:
    return launch("labelsmooth-eval")


def report() -> Any:
    return launch("labelsmooth-report")

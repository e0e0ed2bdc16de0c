"""The Hydra configs (``train.yaml``, ``eval.yaml`` and their groups), shipped as the package ``labelsmooth.conf``.

The repository keeps them at its top level, ``conf/``; ``pyproject.toml`` maps that folder to ``labelsmooth.conf``,
so a wheel carries them inside the package and an editable install imports them from the checkout. ``CONFIG_DIR``
is the one place that says where they are: the apps (``python train.py``, ``labelsmooth-train``, ...), the tests
and the benchmarks all read it from here.
"""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent

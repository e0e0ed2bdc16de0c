"""The run directory: every path of the run-outputs contract, defined once.

A run (one ``python train.py``, one job of a multirun, one ``python eval.py``) writes into one directory::

    .hydra/config.yaml          the composed config (Hydra)
    .hydra/hydra.yaml           Hydra's own config, with the config-group choices
    .hydra/overrides.yaml       the job's command-line overrides
    metrics.json                the flat result record (``labelsmooth.runs.files``)
    train.log                   the run's log
    history.csv                 the training curve, one row per epoch (``labelsmooth.runs.history``)
    checkpoints/                best-epochNNN.ckpt and last.ckpt
    calibration/                reliability_<split>.csv and .png
    predictions/<split>.npz     logits (float32, N × K) and targets (int64, N) of the final evaluation
    confusion_matrix.png        the test confusion matrix, rows normalised (true class → predicted class)
    penultimate_projection.png  the penultimate-layer picture
    wandb/                      W&B's files of the run

Everything that reads or writes one of these paths takes it from ``RunDirectory``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

METRICS_FILE = "metrics.json"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


@dataclass(frozen=True)
class RunDirectory:
    """The paths of one run directory ``root``."""

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def hydra_dir(self) -> Path:
        return self.root / ".hydra"

    @property
    def config_yaml(self) -> Path:
        return self.hydra_dir / "config.yaml"

    @property
    def hydra_yaml(self) -> Path:
        return self.hydra_dir / "hydra.yaml"

    @property
    def overrides_yaml(self) -> Path:
        return self.hydra_dir / "overrides.yaml"

    @property
    def metrics_json(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def train_log(self) -> Path:
        return self.root / "train.log"

    @property
    def history_csv(self) -> Path:
        return self.root / "history.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.root / LAST_CHECKPOINT

    @property
    def calibration_dir(self) -> Path:
        return self.root / "calibration"

    def reliability_csv(self, split: str) -> Path:
        """The per-bin numbers of ``split`` (``val``, ``test``, ``test_ts``)."""
        return self.calibration_dir / f"reliability_{split}.csv"

    def reliability_png(self, split: str) -> Path:
        return self.calibration_dir / f"reliability_{split}.png"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    def predictions(self, split: str) -> Path:
        """``predictions/<split>.npz`` (``val``, ``test``)."""
        return self.predictions_dir / f"{split}.npz"

    @property
    def confusion_matrix_png(self) -> Path:
        """The test confusion matrix of the run's final test, each row (true class) normalised."""
        return self.root / "confusion_matrix.png"

    @property
    def penultimate_projection(self) -> Path:
        return self.root / "penultimate_projection.png"

    @property
    def wandb_dir(self) -> Path:
        return self.root / "wandb"

    @classmethod
    def of_checkpoint(cls, ckpt_path: str | os.PathLike) -> RunDirectory:
        """The run a checkpoint belongs to: ``<run>/checkpoints/<file>.ckpt`` → ``<run>``."""
        return cls(Path(ckpt_path).resolve().parent.parent)

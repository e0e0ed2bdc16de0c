"""A fused member's checkpoints: the files its own run would write, holding that member alone."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from labelsmooth.module import LabelSmoothingClassifier
from labelsmooth.runs.checkpoints import AtomicCheckpointIO, replace_with_link


def ranked_score(score: float | None, mode: str) -> float | None:
    """A monitored ``score`` as Lightning's ``ModelCheckpoint`` ranks it: NaN as the worst (``-inf`` under ``max``,
    ``inf`` under ``min``), so that a later finite score replaces its checkpoint."""
    if score is not None and math.isnan(score):
        return float("-inf") if mode == "max" else float("inf")
    return score


class MemberCheckpoints:
    """Best and last checkpoints of one member, by the rule of the checkpoint callback its run is configured with
    (``callback``, a ``BestAndLastCheckpoint``): its directory and file names, its monitored metric and mode
    (the best improves strictly, as ``ModelCheckpoint``), ``last.ckpt`` after every validation of fit (a link to
    the best when that epoch wrote it). Each file is a Lightning checkpoint of the member's module alone: its
    weights, best accuracy and epoch, and run specification, so ``eval.py``, ``trainer.validate(ckpt_path=...)``
    and ``LabelSmoothingClassifier.load_from_checkpoint`` read it as any run's. It holds no optimizer state: a
    fused group continues from its own group checkpoint."""

    def __init__(self, callback: ModelCheckpoint) -> None:
        self.callback = callback
        self.best_score: float | None = None
        self.best_path = ""
        self._io = AtomicCheckpointIO()

    def _improves(self, score: float | None) -> bool:
        """Whether ``score`` (``ranked_score``) makes a new best; without a monitor the newest is the best, as
        Lightning's ``ModelCheckpoint`` keeps it."""
        if not self.callback.monitor:
            return True
        if score is None:
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.callback.mode == "max" else score < self.best_score

    def update(
        self, module: LabelSmoothingClassifier, values: dict[str, float], callbacks: dict[str, Any] | None = None
    ) -> None:
        """After a validation of fit: ``values`` holds its ``epoch``, ``step`` and the ``val/*`` metrics;
        ``callbacks``: the states of the member's callbacks (its strategy schedule), by their state keys."""
        callback = self.callback
        epoch, step = int(values["epoch"]), int(values["step"])
        checkpoint: dict[str, Any] = {
            "epoch": epoch,
            "global_step": step,
            "pytorch-lightning_version": pl.__version__,
            "state_dict": module.state_dict(),
            "callbacks": dict(callbacks or {}),
        }
        module.on_save_checkpoint(checkpoint)
        score = ranked_score(values.get(callback.monitor), callback.mode) if callback.monitor else None
        written = None
        if self._improves(score) and callback.save_top_k != 0:
            previous = self.best_path
            written = callback.format_checkpoint_name({"epoch": epoch, "step": step, **values})
            self._io.save_checkpoint(checkpoint, written)
            self.best_path, self.best_score = written, score
        if callback.save_last and callback.dirpath:
            last = os.path.join(callback.dirpath, callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION)
            if written is not None:
                replace_with_link(written, last)
            else:
                self._io.save_checkpoint(checkpoint, last)
        if written is not None and previous and previous != written and callback.save_top_k == 1:
            Path(previous).unlink(missing_ok=True)

    def state_dict(self) -> dict[str, Any]:
        """The best score and the best file's name: the file is in the member's checkpoint directory wherever the
        sweep directory is moved or copied (a path would reach into the original)."""
        return {"best_score": self.best_score, "best_path": os.path.basename(self.best_path)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        name = os.path.basename(state["best_path"])
        self.best_score = state["best_score"]
        self.best_path = os.path.join(str(self.callback.dirpath), name) if name else ""

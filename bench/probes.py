"""Lightning callbacks that timestamp a real ``train()`` run (benchmarks only).

Hydra instantiates them from the run's config (``callbacks.epoch_clock._target_=probes.EpochClock``), so
the benchmarks time the very Trainer that ``train.py`` builds. ``EpochClock`` (in-process runs) collects
its finished clocks in ``FINISHED``; ``WallClockMarks`` (subprocess runs) writes wall-clock marks to a JSON
file so a parent process can compare them with the moment it launched the run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from pytorch_lightning import Callback

from labelsmooth.callbacks import Observer

FINISHED: list[EpochClock] = []


class EpochClock(Callback):
    """Per epoch: start of training, start of validation, and the start of the next epoch (or the end of
    training), so ``train_s`` is the training pass and ``epoch_s`` everything the epoch costs (training,
    validation, checkpoints, logging); also the validation accuracy at the end of each epoch."""

    def __init__(self) -> None:
        self.epoch_starts: list[float] = []
        self.val_starts: list[float] = []
        self.train_end: float | None = None
        self.val_acc: list[float] = []
        self.train_loss: list[float] = []  # each epoch's mean training loss (the module logs it at its epoch end)

    def _record_train_loss(self, trainer) -> None:
        value = trainer.callback_metrics.get("train/loss")
        if value is not None and len(self.train_loss) < len(self.epoch_starts):
            self.train_loss.append(float(value))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.epoch_starts:
            self._record_train_loss(trainer)
        self.epoch_starts.append(time.perf_counter())

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.val_starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get("val/acc")
        self.val_acc.append(float(value) if value is not None else float("nan"))

    def on_train_end(self, trainer, pl_module) -> None:
        self.train_end = time.perf_counter()
        self._record_train_loss(trainer)
        FINISHED.append(self)

    def train_seconds(self) -> list[float]:
        return [val - start for start, val in zip(self.epoch_starts, self.val_starts, strict=False)]

    def epoch_seconds(self) -> list[float]:
        bounds = [*self.epoch_starts, self.train_end]
        return [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class WallClockMarks(Observer):  # it records times only: a fused group admits it
    """Wall-clock (``time.time()``) marks of one run, appended as JSON lines to ``path``: the first training
    step, the start and end of ``fit`` (the training) and the end of ``test`` (after the final validation, test,
    reliability diagrams and temperature scaling); on a GPU, the process's peak of allocated GPU memory so far
    (``cuda_peak_mib``: ``torch.cuda.max_memory_allocated``, the tensors of every run of the process)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.marks: dict[str, float] = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        self.marks.setdefault("fit_start", time.time())

    def on_fit_end(self, trainer, pl_module) -> None:
        self.marks.setdefault("fit_end", time.time())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.marks.setdefault("first_train_step", time.time())

    def on_test_end(self, trainer, pl_module) -> None:
        self.marks["test_end"] = time.time()
        if torch.cuda.is_initialized():
            self.marks["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(self.marks) + "\n")

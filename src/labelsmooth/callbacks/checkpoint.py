"""Best and last checkpoints: ``last.ckpt`` after every epoch, and one file write per epoch."""

from __future__ import annotations

import os
import shutil
from typing import Any
from weakref import proxy

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn

from labelsmooth.runs.checkpoints import CheckpointError, replace_with_link
from labelsmooth.runs.files import write_atomic


class BestAndLastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` (same arguments) whose ``last.ckpt`` holds the state after every epoch.

    Lightning 2.6 and later write ``last.ckpt`` only at a step where they also wrote a top-k checkpoint, so with
    ``monitor`` it holds the best epoch rather than the latest one (``resume=true`` would repeat every epoch since
    the best), and an epoch that improves the best writes the same state twice. Here, with ``save_last`` set, at
    every point where the checkpoints are updated (each epoch's end):

    * a top-k checkpoint was written at this step (the monitored value improved): ``last.ckpt`` becomes a
      *relative* symbolic link to it, so the directory can be moved or copied (``cp -r``, ``rsync -a`` keep the
      link; ``cp -rL`` and ``shutil.copytree`` copy the file). One write instead of two. Where symbolic links
      cannot be made (some file systems, Windows without the privilege) it is a copy.
    * otherwise ``last.ckpt`` is written as a file.

    ``last.ckpt`` is never missing nor dangling, so a run killed at any moment can be resumed: both kinds are made
    under a temporary name in the same directory and moved over ``last.ckpt`` with ``os.replace`` (atomic; a file
    is never written *through* the link into the best checkpoint), and a checkpoint that ``last.ckpt`` links to
    is removed only after ``last.ckpt`` points at its successor. Checkpoints must be single files (DDP, not
    sharded strategies). ``last.ckpt`` keeps its name (no ``last-v1.ckpt``): a resumed run reuses its directory.

    A checkpoint continued in another directory (``ckpt_path=``, or a run directory moved or copied) keeps its best
    so far: Lightning would forget the best score and checkpoints, so the continued run would select and test a
    checkpoint of its own epochs while ``val/acc_best`` named an earlier one. The best checkpoints are found under
    their names in this directory (a moved run), where they were written, or next to the continued checkpoint, and
    copied here where they are not (the continued run's directory holds its whole result); a best checkpoint found
    nowhere is a ``CheckpointError``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._written: tuple[int, str] | None = None  # (global step, path) of the latest file this callback wrote
        self._last_step: int | None = None  # the global step last.ckpt holds
        self._continued_from: str | None = None  # the checkpoint a fit continues

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        self._continued_from = trainer.ckpt_path  # Lightning loads the callbacks' states next

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        written_in = state_dict.get("dirpath", self.dirpath)
        if written_in == self.dirpath or not self.dirpath or not state_dict.get("best_model_path"):
            super().load_state_dict(state_dict)
            return
        best_k = state_dict.get("best_k_models") or {}
        here = {path: self._copied_here(path, state_dict) for path in {*best_k, state_dict["best_model_path"]}}
        super().load_state_dict(
            {
                **state_dict,
                "dirpath": self.dirpath,
                "best_k_models": {here[path]: score for path, score in best_k.items()},
                "best_model_path": here[state_dict["best_model_path"]],
                "kth_best_model_path": here.get(state_dict.get("kth_best_model_path"), ""),
                "last_model_path": "",
            }
        )

    def _copied_here(self, path: str, state: dict[str, Any]) -> str:
        """The best checkpoint ``path`` of a continued run, in this callback's directory: found there, where it was
        written, or next to the continued checkpoint."""
        name = os.path.basename(path)
        here = os.path.join(str(self.dirpath), name)
        continued = self._continued_from or ""
        candidates = [here, path, *([os.path.join(os.path.dirname(continued), name)] if continued else [])]
        best = state.get("best_model_score")
        source = next((candidate for candidate in candidates if os.path.isfile(candidate)), None)
        if source is None:
            score = f" ({self.monitor}={float(best):.4f})" if best is not None else ""
            raise CheckpointError(
                f"{continued or 'The checkpoint'} continues a run whose best checkpoint so far{score} is {path}, "
                f"which is gone (nor is {name} next to the continued checkpoint): copy it there, or start a new run"
            )
        if source != here:
            write_atomic(here, lambda temporary: shutil.copyfile(source, temporary))
        return here

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's key, so checkpoints written with it (runs from before this class) resume with their
        # best score and best checkpoint path.
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    # -- when -------------------------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_every_epoch(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_every_epoch(trainer)

    def _save_last_every_epoch(self, trainer: pl.Trainer) -> None:
        skip = bool(trainer.fast_dev_run) or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking
        if self.save_last and not skip and self._last_step != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    # -- how --------------------------------------------------------------------------------------------
    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._written = (trainer.global_step, filepath)

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        if not self.save_last or self._last_step == trainer.global_step:
            return
        filepath = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
        previous, self.last_model_path = self.last_model_path, filepath
        # The same decision on every process (no file system query): collective calls follow from it.
        if self._written is not None and self._written[0] == trainer.global_step and self._written[1] != filepath:
            if trainer.is_global_zero:
                replace_with_link(self._written[1], filepath)
            trainer.strategy.barrier("BestAndLastCheckpoint.link")
        else:
            temporary = f"{filepath}.tmp"
            if trainer.is_global_zero and os.path.lexists(temporary):
                os.remove(temporary)  # a link left by a killed run: a copy could be written through it
            trainer.save_checkpoint(temporary, self.save_weights_only)
            if trainer.is_global_zero:
                os.replace(temporary, filepath)
            trainer.strategy.barrier("BestAndLastCheckpoint.replace")
            self._written = (trainer.global_step, filepath)
            if trainer.is_global_zero:
                for logger in trainer.loggers:
                    logger.after_save_checkpoint(proxy(self))
        self._last_step = trainer.global_step
        if previous and previous != filepath and self._should_remove_checkpoint(trainer, previous, filepath):
            self._remove_checkpoint(trainer, previous)

    def _remove_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        last = self.last_model_path
        if (
            trainer.is_global_zero
            and last
            and os.path.islink(last)
            and os.path.realpath(last) == os.path.realpath(filepath)
            and self._written is not None
            and os.path.realpath(self._written[1]) != os.path.realpath(filepath)
            and os.path.isfile(self._written[1])
        ):
            replace_with_link(self._written[1], last)  # last.ckpt links to the file going away: never dangling
        super()._remove_checkpoint(trainer, filepath)

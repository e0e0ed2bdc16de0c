"""BestAndLastCheckpoint: last.ckpt after every epoch, a relative link to a new best, never dangling, resumable."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labelsmooth.callbacks.checkpoint import BestAndLastCheckpoint
from labelsmooth.runs.checkpoints import load_checkpoint

SCORES = [0.5, 0.7, 0.6, 0.6, 0.9, 0.8]  # val/acc per epoch: new bests at epochs 0, 1 and 4
IMPROVED = {0, 1, 4}


class ScriptedScore(pl.LightningModule):
    """Trains a linear layer and logs ``val/acc`` from ``SCORES`` (by epoch), so the best epochs are known."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 3)

    def training_step(self, batch, batch_idx):
        inputs, target = batch
        return nn.functional.cross_entropy(self.net(inputs), target)

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", SCORES[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class DirectoryWatch(Callback):
    """Records the checkpoint directory after each epoch's checkpoints (at the next epoch's start and at the end)
    and checks, at every removal of a checkpoint, that ``last.ckpt`` does not point at the file going away."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.after_epoch: list[dict] = []
        self.removals = 0
        self._first_epoch_started = False

    def setup(self, trainer, pl_module, stage) -> None:
        remove = trainer.strategy.remove_checkpoint

        def checked_remove(filepath) -> None:
            last = self.directory / "last.ckpt"
            assert last.resolve() != Path(filepath).resolve(), "last.ckpt would dangle"
            self.removals += 1
            remove(filepath)

        trainer.strategy.remove_checkpoint = checked_remove

    def _record(self) -> None:
        last = self.directory / "last.ckpt"
        self.after_epoch.append(
            {
                "last_epoch": load_checkpoint(last)["epoch"],
                "link": os.readlink(last) if last.is_symlink() else None,
                "files": sorted(p.name for p in self.directory.iterdir()),
            }
        )

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._first_epoch_started:
            self._record()
        self._first_epoch_started = True

    def on_train_end(self, trainer, pl_module) -> None:
        self._record()


def checkpoint_callback(directory: Path) -> BestAndLastCheckpoint:
    return BestAndLastCheckpoint(
        dirpath=directory, filename="best-epoch{epoch:03d}", monitor="val/acc", mode="max",
        save_last=True, save_top_k=1, auto_insert_metric_name=False,
    )  # fmt: skip


def fit(directory: Path, max_epochs: int, ckpt_path: str | None = None) -> tuple[pl.Trainer, DirectoryWatch]:
    watch = DirectoryWatch(directory)
    trainer = pl.Trainer(
        max_epochs=max_epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[checkpoint_callback(directory), watch],
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(16, 4, generator=generator), torch.randint(0, 3, (16,), generator=generator))
    trainer.fit(ScriptedScore(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8), ckpt_path=ckpt_path)
    return trainer, watch


def test_last_checkpoint_holds_every_epoch_and_links_to_a_new_best(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    trainer, watch = fit(directory, max_epochs=len(SCORES))
    assert [state["last_epoch"] for state in watch.after_epoch] == list(range(len(SCORES)))
    for epoch, state in enumerate(watch.after_epoch):
        best = f"best-epoch{max(e for e in IMPROVED if e <= epoch):03d}.ckpt"
        assert state["files"] == sorted([best, "last.ckpt"]), (epoch, state)
        # A new best: one write, and last.ckpt a relative link to it; otherwise last.ckpt is a file of its own.
        assert state["link"] == (best if epoch in IMPROVED else None), (epoch, state)
    assert watch.removals == len(IMPROVED) - 1
    assert trainer.checkpoint_callback.best_model_path == str(directory / "best-epoch004.ckpt")


def test_a_copied_or_moved_run_directory_keeps_a_loadable_last_checkpoint(tmp_path: Path) -> None:
    fit(tmp_path / "run" / "checkpoints", max_epochs=5)  # ends on a new best: last.ckpt is a link
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_symlink()
    shutil.copytree(tmp_path / "run", tmp_path / "copy", symlinks=True)  # as cp -r: the link itself is copied
    shutil.move(tmp_path / "run", tmp_path / "moved")
    for run in ("copy", "moved"):
        last = tmp_path / run / "checkpoints" / "last.ckpt"
        assert last.is_symlink() and last.is_file()
        assert load_checkpoint(last)["epoch"] == 4


def test_a_run_resumes_from_a_linked_last_checkpoint(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    fit(directory, max_epochs=2)  # epoch 1 is a new best: last.ckpt links to best-epoch001.ckpt
    assert os.readlink(directory / "last.ckpt") == "best-epoch001.ckpt"
    trainer, watch = fit(directory, max_epochs=len(SCORES), ckpt_path=str(directory / "last.ckpt"))
    assert [state["last_epoch"] for state in watch.after_epoch] == list(range(2, len(SCORES)))
    callback = trainer.checkpoint_callback
    assert callback.best_model_path == str(directory / "best-epoch004.ckpt")
    assert float(callback.best_model_score) == pytest.approx(SCORES[4])
    assert sorted(p.name for p in directory.iterdir()) == ["best-epoch004.ckpt", "last.ckpt"]
    assert load_checkpoint(directory / "last.ckpt")["epoch"] == len(SCORES) - 1


def test_state_key_is_model_checkpoints_so_older_checkpoints_resume_with_their_best() -> None:
    kwargs = {"monitor": "val/acc", "mode": "max", "save_last": True}
    assert BestAndLastCheckpoint(**kwargs).state_key == ModelCheckpoint(**kwargs).state_key


def test_a_checkpoint_continued_under_other_training_settings_is_refused(tmp_path: Path) -> None:
    """Lightning restores the checkpoint's optimizer and scheduler: a longer run kept the 2-epoch cosine (the
    learning rate went 1e-3, 7.5e-4, 2.5e-4, 0, 2.5e-4) while metrics.json recorded T_max = 5. Another strategy
    parameter, batch size or seed would train one run under two settings while metrics.json recorded the second.
    Where the data is and how it is read may change."""
    from labelsmooth.runs.checkpoints import CheckpointMismatchError
    from tests.conftest import run_training

    checkpoint = run_training(tmp_path / "a", ["model=mlp", "trainer.max_epochs=2"])["checkpoint"]
    refused = {
        "trainer.max_epochs=3": r"scheduler.T_max=2 in the checkpoint, 3 here\. Continue it",
        "optimizer.lr=0.01": r": optimizer.lr=0.001 in the checkpoint, 0.01 here\. ",
        "smoothing.epsilon=0.2": r": smoothing.epsilon=0.1 in the checkpoint, 0.2 here\. ",
        "dataset.batch_size=32": r": dataset.batch_size=64 in the checkpoint, 32 here\. ",
        "seed=1": r": seed=0 in the checkpoint, 1 here\. ",
        "strategy_schedule=linear": r": strategy_schedule._target_=None in the checkpoint, '[\w.]+LinearSchedule' here",
        "trainer.precision=bf16-mixed": r": trainer.precision='32-true' in the checkpoint, 'bf16-mixed' here\. ",
        "+trainer.accumulate_grad_batches=2": r": trainer.accumulate_grad_batches=1 in the checkpoint, 2 here\. ",
        "trainer.limit_train_batches=2": r": trainer.limit_train_batches=3 in the checkpoint, 2 here\. ",
        "callbacks.checkpoint.monitor=val/entropy": r": callbacks.checkpoint.monitor='val/acc' in the checkpoint, "
        r"'val/entropy' here\. ",
        "+trainer.gradient_clip_val=1": r": trainer.gradient_clip_algorithm=None in the checkpoint, 'norm' here; "
        r"trainer.gradient_clip_val=None in the checkpoint, 1.0 here\. ",
    }
    for index, (override, message) in enumerate(refused.items()):
        with pytest.raises(CheckpointMismatchError, match=message):
            run_training(
                tmp_path / str(index), ["model=mlp", "trainer.max_epochs=2", override, f"ckpt_path={checkpoint}"]
            )
    no_data = ["dataset=cifar10", f"dataset.root={tmp_path / 'none'}", "dataset.download=false"]
    with pytest.raises(CheckpointMismatchError, match=r"dataset._target_='labelsmooth.data.DigitsDataModule' in the"):
        run_training(tmp_path / "data", ["model=mlp", *no_data, f"ckpt_path={checkpoint}"])  # before the data
    read_otherwise = ["dataset.eval_batch_size=100", "trainer.precision=32-true"]  # 32 by its other name
    run_training(  # read otherwise, trained the same: continues (to its last epoch, so no step is taken)
        tmp_path / "read", ["model=mlp", "trainer.max_epochs=2", *read_otherwise, f"ckpt_path={checkpoint}"]
    )


def test_a_setting_a_checkpoint_does_not_record_is_not_compared() -> None:
    """A checkpoint written before its specification recorded a part (here the Trainer's training settings) is
    continued: only what it records is compared."""
    from labelsmooth.cli.build import training_parts
    from labelsmooth.runs.checkpoints import CheckpointMismatchError, check_same_training
    from tests.conftest import compose_train_config

    configured = training_parts(compose_train_config(["model=mlp", "+trainer.accumulate_grad_batches=2"]))
    older = {part: value for part, value in configured.items() if part != "trainer"}
    check_same_training(older, configured, "old.ckpt")
    with pytest.raises(CheckpointMismatchError, match=r"trainer.accumulate_grad_batches=1 in the checkpoint, 2 here"):
        check_same_training(
            {**older, "trainer": {**configured["trainer"], "accumulate_grad_batches": 1}}, configured, "x"
        )


def test_a_checkpoint_continued_in_another_directory_keeps_its_best_so_far(tmp_path: Path) -> None:
    """Lightning forgets the best score and checkpoints of a checkpoint continued in another directory, so the
    continued run selected and tested one of its own epochs while val/acc_best named an earlier one. Here the
    checkpoints are selected by the highest validation entropy, which falls as the MLP learns: epoch 0 of 2, and
    still of 4."""
    from labelsmooth.runs.checkpoints import CheckpointError
    from labelsmooth.runs.history import read_history_csv
    from tests.conftest import run_training

    worst_first = ["model=mlp", "scheduler=none", "callbacks.checkpoint.monitor=val/entropy"]
    worst_first.append("callbacks.checkpoint.mode=max")
    first = run_training(tmp_path / "a", [*worst_first, "trainer.max_epochs=2"])
    assert Path(first["checkpoint"]).name == "best-epoch000.ckpt"
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert not last.is_symlink()
    shutil.copy(last, tmp_path / "last-alone.ckpt")

    # ckpt_path=: a new run directory, which receives a copy of the best so far; the earlier epochs' code is named
    recorded = json.loads((tmp_path / "a" / "metrics.json").read_text())
    (tmp_path / "a" / "metrics.json").write_text(json.dumps({**recorded, "code.git_commit": "0123456789abcdef"}))
    continued = run_training(tmp_path / "b", [*worst_first, "trainer.max_epochs=4", f"ckpt_path={last}"])
    assert ", commit 0123456789ab" in continued["code.continued_from"]
    assert continued["checkpoint"] == str(tmp_path / "b" / "checkpoints" / "best-epoch000.ckpt")
    assert continued["epochs"] == 4 and continued["test/acc"] == first["test/acc"]
    assert continued["continued_from"] == str(last) and "continued_from" not in first
    assert (tmp_path / "a" / "checkpoints" / "best-epoch000.ckpt").is_file()  # the first run keeps its own
    # its history.csv has the epochs val/acc_best was taken over, those of the checkpoint too (it had 2 and 3)
    history = read_history_csv(tmp_path / "b" / "history.csv")
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    assert history[:2] == read_history_csv(tmp_path / "a" / "history.csv")
    assert max(row["val/acc"] for row in history) == pytest.approx(continued["val/acc_best"], abs=1e-7)

    # a run directory moved (its first location gone) and continued there, as resume=<moved run> does
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "a", moved)
    (moved / "metrics.json").unlink()  # an interrupted run
    moved_last = moved / "checkpoints" / "last.ckpt"
    resumed = run_training(moved, [*worst_first, "trainer.max_epochs=4", f"ckpt_path={moved_last}"])
    assert resumed["checkpoint"] == str(moved / "checkpoints" / "best-epoch000.ckpt")
    assert resumed["test/acc"] == first["test/acc"]

    # the best so far nowhere: one line, before a continued epoch is trained
    alone = [*worst_first, "trainer.max_epochs=4", f"ckpt_path={tmp_path / 'last-alone.ckpt'}"]
    with pytest.raises(
        CheckpointError, match=r"best checkpoint so far \(val/entropy=\d\.\d{4}\) is .*a/checkpoints/best-"
    ):
        run_training(tmp_path / "c", alone)


def test_a_checkpoint_continued_on_data_of_other_classes_is_refused(tmp_path: Path) -> None:
    """Where the data is may change (an image folder's train_dir), but not what it is: an image folder with as many
    classes of other names would train on under the checkpoint's labels."""
    from labelsmooth.runs.checkpoints import CheckpointMismatchError
    from tests.conftest import run_training
    from tests.datasets_on_disk import write_image_folder

    pets = write_image_folder(tmp_path / "pets")
    birds = write_image_folder(tmp_path / "birds", classes=("crows", "gulls", "terns"))
    folder = ["dataset=image_folder", "dataset.image_size=8", "dataset.val_size=0.25", "dataset.test_size=0.25"]
    folder.append("model=mlp")
    trained = run_training(tmp_path / "a", [*folder, f"dataset.train_dir={pets['train_dir']}"])
    continued = [*folder, f"dataset.train_dir={birds['train_dir']}", f"ckpt_path={trained['checkpoint']}"]
    with pytest.raises(CheckpointMismatchError, match=r"trained on the classes cats, dogs, owls; this run's data has "):
        run_training(tmp_path / "b", continued)


def test_an_empty_ckpt_path_starts_from_no_checkpoint(tmp_path: Path) -> None:
    """``ckpt_path=''`` is no checkpoint, as null is: Lightning read it after the data as a path it could not find."""
    from labelsmooth.runs.context import RunContext
    from labelsmooth.runs.resume import start_checkpoint

    assert start_checkpoint(False, "", RunContext(output_dir=tmp_path, choices={})) == (None, None)

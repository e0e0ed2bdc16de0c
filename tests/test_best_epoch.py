"""``val/acc_best_epoch``: the 0-based epoch of the best validation accuracy, in metrics.json and checkpoints, and
the fit's value after the best checkpoint is validated again."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from labelsmooth.cli.build import build_datamodule, build_module
from tests.conftest import compose_train_config, run_training


def test_metrics_json_records_the_epoch_of_the_best_validation_accuracy(tmp_path: Path) -> None:
    summary = run_training(tmp_path, ["logger=csv", "trainer.max_epochs=4", "trainer.limit_val_batches=null"])
    (metrics_csv,) = tmp_path.glob("csv/**/metrics.csv")
    with metrics_csv.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/acc")]
    accuracies = [float(row["val/acc"]) for row in rows[:4]]  # the four epochs of fit; then the final validation
    assert [int(row["epoch"]) for row in rows[:4]] == [0, 1, 2, 3]
    expected = accuracies.index(max(accuracies))  # the first epoch that reached the best
    recorded = json.loads((tmp_path / "metrics.json").read_text())
    assert recorded["val/acc_best_epoch"] == expected and isinstance(recorded["val/acc_best_epoch"], int)
    assert recorded["epochs"] == 4 and recorded["val/acc_best"] == max(accuracies)
    assert Path(summary["checkpoint"]).name == f"best-epoch{expected:03d}.ckpt"  # the checkpoint validated last
    assert [float(row["val/acc_best_epoch"]) for row in rows[:4]] == [
        accuracies.index(max(accuracies[: i + 1])) for i in range(4)
    ]  # logged every epoch (W&B's summary keeps the last)


def fit(tmp_path: Path, max_epochs: int, ckpt_path: str | None = None):
    cfg = compose_train_config(["logger=none"], output_dir=tmp_path)
    datamodule = build_datamodule(cfg.dataset)
    pl.seed_everything(0)
    module = build_module(cfg, datamodule)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", monitor="val/acc", mode="max", save_last=True)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=max_epochs, limit_train_batches=3, num_sanity_val_steps=0,
        logger=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[checkpoints],
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    return module, datamodule, trainer


def test_validating_a_checkpoint_after_fit_keeps_the_fits_best_epoch(tmp_path: Path) -> None:
    module, datamodule, trainer = fit(tmp_path, max_epochs=3)
    best_epoch, best = module.val_acc_best_epoch, float(module.val_acc_best.compute())
    assert best_epoch in (0, 1, 2)
    stored = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert stored["val_acc_best_epoch"] == best_epoch  # saved after the validation that found it
    stored["val_acc_best_epoch"] = 99  # a checkpoint that says otherwise
    other = tmp_path / "other.ckpt"
    torch.save(stored, other)
    for run in (trainer.validate, trainer.test):
        run(module, datamodule=datamodule, ckpt_path=str(other), verbose=False, weights_only=True)
        assert module.val_acc_best_epoch == best_epoch and module.run_record()["val/acc_best_epoch"] == best_epoch
    validated = trainer.validate(module, datamodule=datamodule, ckpt_path=str(other), verbose=False, weights_only=True)
    assert validated[0]["val/acc_best_epoch"] == best_epoch and validated[0]["val/acc_best"] == best


def test_a_resumed_run_keeps_its_best_epoch(tmp_path: Path) -> None:
    first, _, trainer = fit(tmp_path, max_epochs=2)
    last = Path(trainer.checkpoint_callback.last_model_path)
    assert first.val_acc_best_epoch is not None
    assert torch.load(last, weights_only=True)["val_acc_best_epoch"] == first.val_acc_best_epoch
    resumed, datamodule, trainer = fit(tmp_path / "resumed", max_epochs=2, ckpt_path=str(last))  # nothing to train
    assert resumed.val_acc_best_epoch == first.val_acc_best_epoch
    assert resumed.run_record() == {"val/acc_best_epoch": first.val_acc_best_epoch}
    # Its final validation of a checkpoint chosen by another monitor, from an epoch before the best accuracy (as a
    # run killed in its final test and resumed does): val/acc_best is the run's, not the running best stored there.
    stored = torch.load(last, weights_only=True)
    stored["state_dict"]["val_acc_best.max_value"] = torch.tensor(0.0)
    torch.save(stored, earlier := tmp_path / "earlier.ckpt")
    validated = trainer.validate(resumed, datamodule=datamodule, ckpt_path=str(earlier), weights_only=True)
    assert validated[0]["val/acc_best"] == float(first.val_acc_best.compute()) > 0

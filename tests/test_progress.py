"""The progress output of logs and CI: whole lines, the epoch's own metrics, validate and test."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from labelsmooth.callbacks.progress import LineProgress, progress_bar


class TinyClassifier(pl.LightningModule):
    """Logs ``train/loss`` (the epoch mean) in ``on_train_epoch_end`` as ``LabelSmoothingClassifier`` does."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 3)
        self.epoch_losses: list[float] = []
        self._losses: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        inputs, target = batch
        loss = nn.functional.cross_entropy(self.net(inputs), target)
        self._losses.append(loss.detach())
        return loss

    def on_train_epoch_end(self) -> None:
        mean = torch.stack(self._losses).mean()
        self._losses = []
        self.epoch_losses.append(float(mean))
        self.log("train/loss", mean, prog_bar=True)

    def validation_step(self, batch, batch_idx):
        inputs, target = batch
        self.log("val/acc", (self.net(inputs).argmax(-1) == target).float().mean(), prog_bar=True)

    def test_step(self, batch, batch_idx):
        self.validation_step(batch, batch_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def loader(n: int, batch_size: int) -> DataLoader:
    generator = torch.Generator().manual_seed(n)
    data = TensorDataset(torch.randn(n, 4, generator=generator), torch.randint(0, 3, (n,), generator=generator))
    return DataLoader(data, batch_size=batch_size)


def test_line_progress_writes_whole_lines_with_each_epochs_own_loss() -> None:
    stream = io.StringIO()
    torch.manual_seed(0)
    model = TinyClassifier()
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[LineProgress(refresh_rate=2, stream=stream)],
    )  # fmt: skip
    trainer.fit(model, loader(20, 4), loader(8, 4))  # 5 training steps, 2 validation batches per epoch
    trainer.validate(model, loader(8, 4), verbose=False)
    trainer.test(model, loader(12, 4), verbose=False)

    output = stream.getvalue()
    assert "\r" not in output
    number = r"(?<=[= ])\d+(\.\d+)?(e[-+]?\d+)?(?= s$| s,| steps/s$|,|$)"  # timings, rates and metric values
    shapes = [re.sub(number, "X", line) for line in output.splitlines()]
    assert shapes == [
        "Epoch 0/1: 2/5 steps, X steps/s",
        "Epoch 0/1: 4/5 steps, X steps/s",
        "Epoch 0/1 done: 5 steps in X s, val/acc=X, train/loss=X",
        "Epoch 1/1: 2/5 steps, X steps/s",
        "Epoch 1/1: 4/5 steps, X steps/s",
        "Epoch 1/1 done: 5 steps in X s, val/acc=X, train/loss=X",
        "Validation: 2 batches in X s",
        "Testing: 2/3 batches",
        "Testing: 3 batches in X s",
    ]
    done = [line for line in output.splitlines() if " done: " in line]
    for epoch, line in enumerate(done):  # each epoch's own loss, logged after the callbacks' on_train_epoch_end
        assert line.endswith(f"train/loss={model.epoch_losses[epoch]:.4g}")


def test_line_progress_is_silent_when_disabled() -> None:
    stream = io.StringIO()
    bar = LineProgress(refresh_rate=1, stream=stream)
    bar.disable()
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, callbacks=[bar])
    trainer.fit(TinyClassifier(), loader(8, 4), loader(8, 4))
    assert stream.getvalue() == ""


def test_progress_bar_is_lines_without_a_terminal() -> None:
    # pytest captures stdout, so it is not a terminal here.
    assert isinstance(progress_bar(non_interactive_refresh_rate=7), LineProgress)
    assert progress_bar(non_interactive_refresh_rate=7).refresh_rate == 7


def test_each_epoch_is_one_line_in_the_log_file_and_not_on_the_console(tmp_path: Path, caplog) -> None:
    import logging

    from tests.conftest import run_training

    log_file = logging.FileHandler(tmp_path / "train.log")
    logging.getLogger().addHandler(log_file)
    try:
        with caplog.at_level(logging.INFO):
            # validation every other epoch: epoch 1's line has no validation values (it repeated epoch 0's)
            overrides = ["trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2", "logger=none"]
            run_training(tmp_path / "run", [*overrides, "trainer.limit_train_batches=3"])
    finally:
        logging.getLogger().removeHandler(log_file)
        log_file.close()
    lines = [line for line in (tmp_path / "train.log").read_text().splitlines() if " done: " in line]
    assert [line.split(" done:")[0] for line in lines] == ["epoch 0", "epoch 1", "epoch 2"]
    assert all(" done: 3 steps in " in line and "train/loss=" in line for line in lines)  # the steps it took
    assert ["val/acc=" in line and "val/ece=" in line for line in lines] == [False, True, False]
    assert "; lr-Adam/pg1=0.001, lr-Adam/pg2=0.001, train/loss=" in lines[0]  # as history.csv, without a logger
    assert "epoch 0 done" not in caplog.text  # the console has the progress bar's line instead

"""Short real trainings (a few batches of the digits data set) through the real Lightning Trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from labelsmooth.calibration.temperature import fit_temperature
from labelsmooth.cli.checks import check_multirun_ddp
from labelsmooth.errors import ConfigurationError
from labelsmooth.smoothing import BinarySmoothing, CrossEntropy, TargetRange
from tests.conftest import TrainedRun, compose_train_config, run_training
from tests.wandb_records import offline_run_of

CONTRACT_KEYS = {
    "val/acc", "val/acc_best", "val/nll", "val/ece", "val/mce", "val/brier",
    "test/acc", "test/nll", "test/ece", "test/mce", "test/brier",
    "status", "seed", "dataset", "model", "smoothing",
}  # fmt: skip


@pytest.mark.parametrize(
    "overrides,parameter",
    [
        (["smoothing=none"], None),
        (["smoothing=uniform", "smoothing.epsilon=0.2"], ("smoothing.epsilon", 0.2)),
        (["smoothing=gamma", "smoothing.gamma=0.8"], ("smoothing.gamma", 0.8)),
    ],
)
def test_each_strategy_trains_and_writes_the_run_outputs(tmp_path: Path, overrides, parameter) -> None:
    summary = run_training(tmp_path, overrides)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics.keys() >= CONTRACT_KEYS
    assert metrics["status"] == "completed" and metrics["smoothing"] == overrides[0].split("=")[1]
    assert metrics == json.loads(json.dumps(summary))
    if parameter:
        assert metrics[parameter[0]] == parameter[1]
    for key in CONTRACT_KEYS:
        if key.startswith(("val/", "test/")):
            assert 0.0 <= metrics[key] < 10.0, key
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert Path(metrics["checkpoint"]).is_file() and Path(metrics["checkpoint"]).parent == tmp_path / "checkpoints"


def test_uniform_and_equivalent_gamma_give_the_same_metrics(tmp_path: Path) -> None:
    common = ["trainer.max_epochs=2", "trainer.limit_train_batches=4"]
    uniform = run_training(tmp_path / "u", ["smoothing=uniform", "smoothing.epsilon=0.1", *common])
    gamma = run_training(tmp_path / "g", ["smoothing=gamma", "smoothing.gamma=0.91", *common])
    for key in CONTRACT_KEYS:
        if key.startswith(("val/", "test/")):
            assert uniform[key] == pytest.approx(gamma[key], abs=1e-6), key


def test_val_size_0_selects_on_the_test_split_and_records_it(tmp_path: Path, trained_run: TrainedRun) -> None:
    """Mezzini's protocol: the test split validates, so the tested checkpoint's accuracy is the best validation
    accuracy, the temperature is fitted on the test logits (its NLL at most the unscaled one) and ``metrics.json``
    says so (a run with its own validation split records nothing)."""
    summary = run_training(tmp_path, ["model=mlp", "dataset.val_size=0", "trainer.max_epochs=2"])
    assert summary["validation_split"] == "test"
    assert summary["test/acc"] == pytest.approx(summary["val/acc_best"], abs=1e-7)
    assert summary["test/nll_ts"] <= summary["test/nll"] + 1e-7
    assert "validation_split" not in trained_run.summary


def test_mlp_with_bf16_mixed_precision(tmp_path: Path) -> None:
    summary = run_training(tmp_path, ["model=mlp", "trainer.precision=bf16-mixed", "trainer.accelerator=cpu"])
    assert summary["status"] == "completed"


def test_a_failing_run_records_status_failed(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="gamma"):
        run_training(tmp_path, ["smoothing=gamma", "smoothing.gamma=0.05"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error_type"] == "ConfigurationError"
    assert "1/K=0.1" in metrics["error"]


def test_wandb_offline_logger_writes_its_files(tmp_path: Path) -> None:
    summary = run_training(tmp_path, ["logger=wandb"])
    assert summary["status"] == "completed"
    page = offline_run_of(tmp_path)
    assert page.exit_code == 0 and page.summary["test/acc"] == pytest.approx(summary["test/acc"])
    import wandb

    assert wandb.run is None  # the run was finished


@pytest.mark.parametrize("logger,expected", [("csv", "csv"), ("tensorboard", "tensorboard")])
def test_other_loggers(tmp_path: Path, logger: str, expected: str) -> None:
    run_training(tmp_path, [f"logger={logger}"])
    assert any((tmp_path / expected).rglob("*"))


def test_multirun_with_subprocess_ddp_is_refused(tmp_path: Path) -> None:
    cfg = compose_train_config(["trainer=ddp"], output_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="hydra/launcher=joblib"):
        check_multirun_ddp(cfg.trainer, multirun=True)
    check_multirun_ddp(cfg.trainer, multirun=False)
    single = compose_train_config(["trainer=ddp", "trainer.devices=1"], output_dir=tmp_path)
    check_multirun_ddp(single.trainer, multirun=True)
    # strategy auto on two devices is Lightning's DDP: each process ran the whole sweep again
    auto = compose_train_config(["trainer=cpu", "trainer.devices=2"], output_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="^trainer.strategy=auto with 2 devices cannot run inside a Hydra"):
        check_multirun_ddp(auto.trainer, multirun=True)
    spawned = compose_train_config(["trainer=cpu", "trainer.devices=2", "+trainer.strategy=ddp_spawn"], tmp_path)
    check_multirun_ddp(spawned.trainer, multirun=True)


def sigmoid_distribution(logits: torch.Tensor) -> torch.Tensor:
    probs = torch.sigmoid(logits.double())
    return probs / probs.sum(-1, keepdim=True)


@pytest.mark.parametrize(
    "criterion,distribution",
    [
        (TargetRange(3), sigmoid_distribution),
        (BinarySmoothing(3, 0.1), sigmoid_distribution),
        (CrossEntropy(3), lambda z: z.double().softmax(-1)),
    ],
    ids=["target_range", "binary", "none"],
)
def test_metrics_and_calibration_read_the_strategys_predictive_distribution(tmp_path: Path, criterion, distribution):
    """Sigmoid heads are evaluated on ``σ(z_k) / Σ_j σ(z_j)``, softmax strategies on ``softmax(z)``: the logged
    NLL, the logits the calibration callback keeps and the temperature it fits on them all use that distribution."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from labelsmooth.callbacks import CalibrationCallback
    from labelsmooth.module import LabelSmoothingClassifier

    generator = torch.Generator().manual_seed(0)
    net = torch.nn.Linear(4, 3)
    with torch.no_grad():
        net.weight.copy_(torch.randn(3, 4, generator=generator) * 2)
        net.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))  # sigmoid outputs far from summing to 1
    inputs, target = torch.randn(40, 4, generator=generator), torch.randint(0, 3, (40,), generator=generator)
    module = LabelSmoothingClassifier(net, criterion, lambda params: torch.optim.SGD(params, lr=0.1), num_classes=3)
    calibration = CalibrationCallback(output_dir=str(tmp_path), figures=False)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[calibration]
    )
    loader = DataLoader(TensorDataset(inputs, target), batch_size=16)
    results = trainer.validate(module, loader, verbose=False)[0] | trainer.test(module, loader, verbose=False)[0]

    with torch.no_grad():
        logits = net(inputs)
    probs = distribution(logits)
    nll = -probs.gather(-1, target.unsqueeze(-1)).log().mean()
    brier = (probs - F.one_hot(target, 3).double()).square().sum(-1).mean()
    for split in ("val", "test"):
        assert results[f"{split}/nll"] == pytest.approx(float(nll), rel=1e-5), split
        assert results[f"{split}/brier"] == pytest.approx(float(brier), rel=1e-5), split
        assert results[f"{split}/acc"] == pytest.approx(float((logits.argmax(-1) == target).double().mean())), split
    torch.testing.assert_close(calibration.val_logits.double().softmax(-1), probs, rtol=1e-5, atol=1e-6)
    expected_temperature = fit_temperature(probs.log(), target)  # softmax(log p / T) ∝ p^(1/T), whatever p's logits
    assert results["temperature"] == pytest.approx(expected_temperature, rel=1e-4)


def test_the_epochs_training_loss_is_the_mean_over_its_samples() -> None:
    """Batches of 16, 16 and 8 at a learning rate of 0: ``train/loss`` is the cross entropy of the 40 samples, the
    last batch counting for its 8 (not the mean of the three batch means)."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from labelsmooth.module import LabelSmoothingClassifier

    generator = torch.Generator().manual_seed(0)
    net = torch.nn.Linear(4, 3)
    inputs, target = torch.randn(40, 4, generator=generator) * 3, torch.randint(0, 3, (40,), generator=generator)
    optimizer = lambda params: torch.optim.SGD(params, lr=0.0)  # noqa: E731
    module = LabelSmoothingClassifier(net, CrossEntropy(3), optimizer, num_classes=3)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(inputs, target), batch_size=16))
    with torch.no_grad():
        expected = F.cross_entropy(net(inputs).double(), target)
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(float(expected), rel=1e-5)


def test_each_ddp_process_draws_its_own_augmentation_the_same_for_the_same_process_and_epoch(tmp_path: Path) -> None:
    """DDP processes share the seed, so every process shifted, flipped and mixed image i of its batch alike: each
    training epoch of each process now draws from (seed, process, epoch), which a resumed run replays
    (tests/test_reliability.py resumes a killed DDP run to the same metrics)."""
    from types import SimpleNamespace

    from labelsmooth.cli.build import build_datamodule
    from tests.conftest import compose_train_config

    datamodule = build_datamodule(compose_train_config(["dataset.shift=0.1", "dataset.hflip=true"]).dataset)
    batch = next(iter(datamodule.train_dataloader()))

    def shifted(rank: int, epoch: int, world_size: int = 2) -> torch.Tensor:
        datamodule.trainer = SimpleNamespace(
            training=True, world_size=world_size, global_rank=rank, current_epoch=epoch
        )
        datamodule._seeded_epoch = None  # a fresh process
        torch.manual_seed(0)  # as seed_everything leaves every process
        return datamodule.on_after_batch_transfer(batch, 0)[0]

    assert not torch.equal(shifted(0, 0), shifted(1, 0))
    assert not torch.equal(shifted(1, 0), shifted(1, 1))
    assert torch.equal(shifted(1, 1), shifted(1, 1))
    one_process = shifted(0, 0, world_size=1)
    torch.manual_seed(0)
    assert torch.equal(one_process, datamodule.preprocess_batch(batch, train=True)[0])  # the seeded generator, as is

"""Temperature scaling and the ``*_ts`` metrics belong to the evaluation (the LightningModule), not to a callback:
they are in ``metrics.json`` whatever ``callbacks=`` says, and one ``n_bins`` serves every binned metric."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from labelsmooth.calibration.temperature import SCALED_METRICS, fit_temperature, temperature_scaled_metrics
from labelsmooth.runs.layout import RunDirectory
from tests import reference_metrics as reference
from tests.conftest import run_training

SCALED_KEYS = ("temperature", *(f"test/{name}_ts" for name in SCALED_METRICS))


def run_without_callbacks(tmp_path: Path) -> dict:
    """``run_training`` with ``callbacks=none`` (less the fixture's ``callbacks.progress_bar=null``, which has no
    entry to set there)."""
    from labelsmooth.cli.train import train
    from labelsmooth.runs.context import RunContext
    from tests.conftest import FAST, choices_of, compose_train_config

    overrides = [*(o for o in FAST if not o.startswith("callbacks.")), "callbacks=none"]
    cfg = compose_train_config(overrides, output_dir=tmp_path)
    return train(cfg, RunContext(output_dir=tmp_path, choices=choices_of(overrides)))


def test_without_callbacks_metrics_json_has_the_temperature_scaled_metrics(tmp_path: Path) -> None:
    summary = run_without_callbacks(tmp_path)
    metrics = json.loads(RunDirectory(tmp_path).metrics_json.read_text())
    assert summary["status"] == "completed" and metrics == json.loads(json.dumps(summary))
    assert metrics["temperature"] > 0
    for key in SCALED_KEYS:
        assert math.isfinite(metrics[key]), key
    assert not (tmp_path / "calibration").exists()  # the figures are the callback's


def test_the_values_with_the_calibration_callback_equal_those_without_it(tmp_path: Path) -> None:
    overrides = ["smoothing=gamma", "smoothing.gamma=0.8", "figures=true"]
    with_callback = run_training(tmp_path / "with", overrides)
    without = run_training(tmp_path / "without", [*overrides, "callbacks.calibration=null"])
    assert (tmp_path / "with" / "calibration" / "reliability_test.png").is_file()
    assert not (tmp_path / "without" / "calibration").exists()
    keys = [k for k in with_callback if k.startswith(("val/", "test/")) or k == "temperature"]
    assert set(SCALED_KEYS) <= set(keys) and set(keys) <= set(without)
    for key in keys:
        assert without[key] == with_callback[key], key


def test_n_bins_sets_the_bins_of_ece_and_ece_ts_and_of_the_diagrams(tmp_path: Path) -> None:
    metrics = run_training(tmp_path, ["n_bins=10"])
    run = RunDirectory(tmp_path)
    with np.load(run.predictions("test")) as saved:
        logits, targets = saved["logits"], saved["targets"]
    with np.load(run.predictions("val")) as saved:
        temperature = fit_temperature(torch.from_numpy(saved["logits"]), torch.from_numpy(saved["targets"]))
    assert metrics["temperature"] == pytest.approx(temperature, rel=1e-6)

    def ece(z: np.ndarray, n_bins: int) -> float:
        probs = reference.softmax32(z)
        return reference.equal_width_ece(
            probs.max(axis=1), (probs.argmax(axis=1) == targets).astype(np.float64), n_bins
        )

    scaled = (logits.astype(np.float64) / temperature).astype(np.float32)
    for key, z in (("test/ece", logits), ("test/ece_ts", scaled)):
        assert metrics[key] == pytest.approx(ece(z, 10), rel=1e-5, abs=1e-6), key
        assert ece(z, 10) != pytest.approx(ece(z, 15), rel=1e-3), key  # 10 bins differ from the default 15 here
    assert metrics["test/classwise_ece"] == pytest.approx(reference.classwise_ece(logits, targets, 10), rel=1e-5)
    # The same bins in the reliability diagram's numbers: equal-width edges m/10.
    with open(run.reliability_csv("test"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["split"] for r in rows} == {"test", "test_ts"}
    for row in rows:
        assert float(row["upper"]) * 10 == pytest.approx(round(float(row["upper"]) * 10), abs=1e-5), row


class ThreeClasses(torch.utils.data.Dataset):
    """The class is the largest of the first three inputs, one label in four replaced by a random one."""

    def __init__(self, n: int = 40) -> None:
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(n, 4, generator=generator)
        noisy = torch.rand(n, generator=generator) < 0.25
        self.target = torch.where(noisy, torch.randint(0, 3, (n,), generator=generator), self.inputs[:, :3].argmax(1))

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, index: int):
        return self.inputs[index], self.target[index]


def small_module(n_bins: int = 15):
    from labelsmooth.module import LabelSmoothingClassifier
    from labelsmooth.smoothing import CrossEntropy

    net = torch.nn.Linear(4, 3)
    with torch.no_grad():
        net.weight.copy_(8 * torch.eye(3, 4))  # over-confident: the temperature is above 1
        net.bias.zero_()
    return LabelSmoothingClassifier(
        net, CrossEntropy(3), lambda params: torch.optim.SGD(params, lr=0.1), 3, n_bins=n_bins
    )


def small_trainer(callbacks: list):
    import pytorch_lightning as pl

    return pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks
    )


def test_the_module_fits_the_temperature_on_the_latest_validation(tmp_path: Path) -> None:
    loader = torch.utils.data.DataLoader(ThreeClasses(), batch_size=16)
    module = small_module(n_bins=7)
    trainer = small_trainer([])
    trainer.validate(module, loader, verbose=False)
    results = trainer.test(module, loader, verbose=False)[0]
    data = ThreeClasses()
    with torch.no_grad():
        logits = module.net(data.inputs)
    temperature = fit_temperature(logits, data.target)
    assert 1 < temperature < 50
    assert module.temperature == pytest.approx(temperature, rel=1e-6)
    assert results["temperature"] == pytest.approx(temperature, rel=1e-6)
    for name, value in temperature_scaled_metrics(logits, data.target, temperature, n_bins=7).items():
        assert results[f"test/{name}_ts"] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    # The kept logits are not in the checkpoint's weights.
    assert not any("predictions" in key for key in module.state_dict())


@pytest.mark.parametrize("with_callback", [False, True])
def test_a_test_without_a_validation_before_it_skips_the_scaled_metrics(tmp_path: Path, caplog, with_callback) -> None:
    from labelsmooth.callbacks import CalibrationCallback

    loader = torch.utils.data.DataLoader(ThreeClasses(), batch_size=16)
    module = small_module()
    callbacks = [CalibrationCallback(output_dir=str(tmp_path))] if with_callback else []
    with caplog.at_level(logging.INFO, logger="labelsmooth.module"):
        results = small_trainer(callbacks).test(module, loader, verbose=False)[0]
    assert "test/ece" in results and not set(SCALED_KEYS) & set(results)
    assert module.temperature is None
    assert [r for r in caplog.records if "no temperature fitted" in r.getMessage()]
    if with_callback:  # the test diagram alone, without a scaled one
        with open(RunDirectory(tmp_path).reliability_csv("test"), newline="") as handle:
            assert {r["split"] for r in csv.DictReader(handle)} == {"test"}


def test_a_figure_that_cannot_be_drawn_is_skipped_with_a_warning(tmp_path: Path, caplog, monkeypatch) -> None:
    from labelsmooth.callbacks import CalibrationCallback
    from labelsmooth.callbacks import calibration as calibration_module

    def broken(panels):
        raise RuntimeError("no backend\nsecond line")

    monkeypatch.setattr(calibration_module, "reliability_figure", broken)
    loader = torch.utils.data.DataLoader(ThreeClasses(), batch_size=16)
    module = small_module()
    trainer = small_trainer([CalibrationCallback(output_dir=str(tmp_path))])
    with caplog.at_level(logging.WARNING, logger="labelsmooth.callbacks.calibration"):
        trainer.validate(module, loader, verbose=False)
        results = trainer.test(module, loader, verbose=False)[0]
    assert results["temperature"] > 0 and math.isfinite(results["test/ece_ts"])
    warnings = [r.getMessage() for r in caplog.records if "reliability diagram" in r.getMessage()]
    assert len(warnings) == 2 and all("RuntimeError: no backend" in w and "\n" not in w for w in warnings), warnings
    assert RunDirectory(tmp_path).predictions("test").is_file()  # the files other than figures are still written


def test_figures_false_draws_none_and_keeps_every_number(tmp_path: Path) -> None:
    overrides = ["smoothing=gamma", "smoothing.gamma=0.8"]
    drawn = run_training(tmp_path / "drawn", [*overrides, "figures=true"])
    numbers = run_training(tmp_path / "numbers", [*overrides, "figures=false"])
    assert sorted(p.name for p in (tmp_path / "drawn").rglob("*.png")) == [
        "confusion_matrix.png", "penultimate_projection.png", "reliability_test.png", "reliability_val.png",
    ]  # fmt: skip
    assert not list((tmp_path / "numbers").rglob("*.png"))
    for name in ("reliability_val.csv", "reliability_test.csv"):
        drawn_csv = (tmp_path / "drawn" / "calibration" / name).read_text()
        assert drawn_csv == (tmp_path / "numbers" / "calibration" / name).read_text()
    assert (tmp_path / "numbers" / "predictions" / "test.npz").is_file()
    assert {k: v for k, v in drawn.items() if isinstance(v, float)} == {
        k: v for k, v in numbers.items() if isinstance(v, float)
    }


def test_plot_every_n_epochs_0_keeps_the_final_validation_diagram(tmp_path: Path) -> None:
    """0 draws no diagram during training; the final validation of the best checkpoint draws its own (its CSV too)."""
    run_training(tmp_path, ["model=mlp", "trainer.max_epochs=2", "callbacks.calibration.plot_every_n_epochs=0"])
    rows = (tmp_path / "calibration" / "reliability_val.csv").read_text().splitlines()
    assert len(rows) > 1 and (tmp_path / "calibration" / "reliability_test.csv").is_file()

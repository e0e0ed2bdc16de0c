"""Saved predictions (``predictions/<split>.npz``): every metric in ``metrics.json`` recomputed from them by the
independent code of ``tests.reference_metrics``; the size limit; the order under DDP."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from labelsmooth.callbacks.calibration import in_dataset_order
from labelsmooth.runs.layout import RunDirectory
from tests import reference_metrics as reference
from tests.conftest import TrainedRun, run_training


def equal_mass_ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    order = np.argsort(confidence, kind="stable")
    groups = np.array_split(order, min(n_bins, len(order)))  # the first N mod G groups one larger
    return sum(abs(correct[g].sum() - confidence[g].astype(np.float64).sum()) for g in groups) / len(order)


def recomputed(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """The metrics of ``ClassificationMetrics`` from saved logits, by independent float64 code (smooth ECE by
    relplot, the reference implementation)."""
    import relplot

    probs64 = reference.softmax64(logits)
    probs32 = reference.softmax32(logits)
    confidence32 = probs32.max(axis=1)
    correct = (probs32.argmax(axis=1) == targets).astype(np.float64)
    confidence64, _ = reference.top1(logits, targets)
    rows = np.arange(len(targets))
    return {
        "acc": float(np.mean(logits.argmax(axis=1) == targets)),
        "nll": float(np.mean(-np.log(probs64[rows, targets]))),
        "brier": float(np.mean(((probs64 - np.eye(logits.shape[1])[targets]) ** 2).sum(axis=1))),
        "ece": reference.equal_width_ece(confidence32, correct),
        "ace": equal_mass_ece(confidence32, correct),
        "classwise_ece": reference.classwise_ece(logits, targets),
        "smooth_ece": float(relplot.smECE(confidence64, correct)),
        "aurc": reference.aurc(confidence64, correct),
        "augrc": reference.augrc(confidence64, correct),
    }


def fitted_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    z = logits.astype(np.float64)
    rows = np.arange(len(targets))

    def nll(log_t: float) -> float:
        scaled = z / math.exp(log_t)
        top = scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled - top).sum(axis=1)) + top[:, 0]
        return float(np.mean(log_norm - scaled[rows, targets]))

    return math.exp(minimize_scalar(nll, bounds=(math.log(0.01), math.log(100)), method="bounded").x)


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as saved:
        assert sorted(saved.files) == ["logits", "targets"]
        return saved["logits"], saved["targets"]


def test_every_metric_is_recomputed_from_the_saved_predictions(trained_run: TrainedRun) -> None:
    metrics = json.loads(RunDirectory(trained_run.directory).metrics_json.read_text())
    run = RunDirectory(trained_run.directory)
    assert metrics["predictions.val"] == "predictions/val.npz" and metrics["predictions.test"] == "predictions/test.npz"
    saved = {split: load(run.predictions(split)) for split in ("val", "test")}
    for logits, targets in saved.values():
        assert logits.dtype == np.float32 and targets.dtype == np.int64
        assert logits.ndim == 2 and logits.shape == (len(targets), 10)
    assert saved["test"][0].shape[0] == 359 and saved["val"][0].shape[0] == 269  # the digits splits, each sample once

    for split, (logits, targets) in saved.items():
        for name, value in recomputed(logits, targets).items():
            assert metrics[f"{split}/{name}"] == pytest.approx(value, rel=1e-5, abs=1e-6), (split, name)

    temperature = fitted_temperature(*saved["val"])
    assert metrics["temperature"] == pytest.approx(temperature, rel=1e-4)
    test_logits, test_targets = saved["test"]
    scaled = (test_logits.astype(np.float64) / metrics["temperature"]).astype(np.float32)
    for name, value in recomputed(scaled, test_targets).items():
        if name != "acc":
            assert metrics[f"test/{name}_ts"] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    # Temperature scaling keeps every prediction but, with 10 classes, not the ranking of the confidences.
    assert metrics["test/aurc_ts"] != metrics["test/aurc"]


def test_predictions_above_the_size_limit_are_skipped_and_recorded(tmp_path: Path, caplog) -> None:
    # val: 269 x 10 = 2690 values, saved; test: 359 x 10 = 3590 values, over the limit.
    with caplog.at_level(logging.WARNING, logger="labelsmooth.callbacks.calibration"):
        run_training(tmp_path, ["callbacks.calibration.predictions_max_values=3000"])
    run = RunDirectory(tmp_path)
    metrics = json.loads(run.metrics_json.read_text())
    assert run.predictions("val").is_file() and not run.predictions("test").exists()
    assert metrics["predictions.val"] == "predictions/val.npz"
    assert metrics["predictions.test"] == "skipped: 359 x 10 = 3590 values > predictions_max_values = 3000"
    assert any("Not saving" in r.getMessage() and "3590 values" in r.getMessage() for r in caplog.records)
    assert math.isfinite(metrics["test/aurc"])  # the metrics do not depend on the saved file


def test_a_negative_size_limit_is_refused() -> None:
    from labelsmooth.callbacks import CalibrationCallback

    with pytest.raises(ValueError, match="predictions_max_values"):
        CalibrationCallback(predictions_max_values=-1)


@pytest.mark.parametrize("kind", ["DistributedSampler", "UnrepeatedDistributedSampler"])
@pytest.mark.parametrize("n", [7, 9, 4])
def test_gathered_parts_are_put_back_in_the_data_sets_order(kind: str, n: int) -> None:
    from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

    sampler_class = {"DistributedSampler": torch.utils.data.DistributedSampler}.get(kind, UnrepeatedDistributedSampler)
    values = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
    world = 3
    samplers = [sampler_class(range(n), num_replicas=world, rank=r, shuffle=False) for r in range(world)]
    gathered = torch.cat([values[list(iter(s))] for s in samplers])  # process 0's part first, as gathered
    torch.testing.assert_close(in_dataset_order(gathered, samplers[0]), values)
    # A shuffled sampler's order is not known here: left as gathered.
    shuffled = sampler_class(range(n), num_replicas=world, rank=0, shuffle=True)
    assert in_dataset_order(gathered, shuffled) is gathered

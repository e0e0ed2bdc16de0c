"""Logit normalisation for selective classification (Xia et al. 2025) recomputed from saved predictions by
independent numpy code, the checkpoint selected by the validation NLL after temperature scaling (Berta et al.
2025), and the report's AURC tables with both confidences."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TrainedRun, run_training
from tests.report_helpers import make_report
from tests.test_report import completed, write_job

GRID = [*range(1, 11), np.inf]


def normalised_max(logits: np.ndarray, p: float) -> np.ndarray:
    centred = logits.astype(np.float64) - logits.astype(np.float64).mean(axis=1, keepdims=True)
    absolute = np.abs(centred)
    norm = absolute.max(axis=1) if np.isinf(p) else (absolute**p).sum(axis=1) ** (1.0 / p)
    return centred.max(axis=1) / norm


def plain_aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    order = np.argsort(-confidence, kind="stable")
    errors = np.cumsum(1.0 - correct[order])
    return float(np.mean(errors / np.arange(1, len(order) + 1)))


def plain_augrc(confidence: np.ndarray, correct: np.ndarray) -> float:
    errors = np.cumsum(1.0 - correct[np.argsort(-confidence, kind="stable")])
    return float((errors.sum() - errors[-1] / 2) / len(errors) ** 2)


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as saved:
        return saved["logits"], saved["targets"]


def test_lognorm_metrics_and_p_recomputed_from_saved_predictions(trained_run: TrainedRun) -> None:
    run = trained_run.directory
    metrics = json.loads((run / "metrics.json").read_text())
    val_logits, val_targets = load(run / "predictions" / "val.npz")
    test_logits, test_targets = load(run / "predictions" / "test.npz")
    val_correct = (val_logits.argmax(axis=1) == val_targets).astype(np.float64)
    scores = [plain_aurc(normalised_max(val_logits, p), val_correct) for p in GRID]
    p = GRID[int(np.argmin(scores))]  # the first of equal scores, as the module
    recorded_p = metrics["lognorm_p"]
    assert (recorded_p == "inf") if np.isinf(p) else recorded_p == pytest.approx(p)
    confidence = normalised_max(test_logits, p)
    correct = (test_logits.argmax(axis=1) == test_targets).astype(np.float64)
    assert metrics["test/aurc_lognorm"] == pytest.approx(plain_aurc(confidence, correct), abs=1e-6)
    assert metrics["test/augrc_lognorm"] == pytest.approx(plain_augrc(confidence, correct), abs=1e-6)
    assert metrics["checkpoint.monitor"] == "val/acc" and metrics["checkpoint.mode"] == "max"
    assert "val/nll_ts" not in metrics  # nothing monitors it: not computed


def test_checkpoint_selected_by_the_validation_nll_after_temperature_scaling(tmp_path: Path) -> None:
    overrides = [
        "logger=csv", "trainer.max_epochs=3", "callbacks.checkpoint.monitor=val/nll_ts",
        "callbacks.checkpoint.mode=min",
    ]  # fmt: skip
    summary = run_training(tmp_path, overrides)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["checkpoint.monitor"] == "val/nll_ts" and metrics["checkpoint.mode"] == "min"
    (metrics_csv,) = tmp_path.glob("csv/**/metrics.csv")
    with metrics_csv.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/nll_ts")]
    nlls = [float(row["val/nll_ts"]) for row in rows[:3]]  # the three epochs of fit
    assert len(nlls) == 3 and all(np.isfinite(nlls))
    best = int(np.argmin(nlls))
    assert Path(summary["checkpoint"]).name == f"best-epoch{best:03d}.ckpt"
    assert metrics["val/acc_best"] >= 0  # the best-accuracy record stays as it was


def test_report_aurc_table_shows_both_confidences_and_the_gap(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    runs = {(0.0, 0): (0.10, 0.08), (0.0, 1): (0.12, 0.09), (0.5, 0): (0.20, 0.09), (0.5, 1): (0.22, 0.11)}
    runs |= {(0.8, 0): (0.09, 0.08), (0.8, 1): (0.09, 0.08)}  # better than the baseline: no gap to close
    for number, ((gamma, seed), (msp, lognorm)) in enumerate(runs.items()):
        metrics = {**completed(gamma, seed, 0.9, 0.1, 0.05), "test/aurc": msp, "test/aurc_lognorm": lognorm}
        write_job(sweep, number, gamma, seed, metrics)
    report = make_report([sweep], baseline=0.0)
    with open(sweep / "table_test_aurc_lognorm.csv", newline="") as handle:
        rows = {float(r["smoothing.gamma"]): float(r["mean"]) for r in csv.DictReader(handle)}
    assert rows == pytest.approx({0.0: 0.085, 0.5: 0.10, 0.8: 0.08})
    text = report.markdown.read_text()
    assert "AURC, max-softmax and logit-normalised" in text
    assert "| digits | 0.5 | 21.00 | 10.00 | +10.00 | +1.50 | yes |" in text
    assert "| digits | 0.8 | 9.00 | 8.00 | -2.00 | -0.50 | – (no gap: not worse than the baseline) |" in text
    # a baseline no job ran (the unsmoothed γ = 1 that the jobs record): no gap to print, "–" as elsewhere
    for metrics_file in sweep.glob("*/metrics.json"):
        metrics_file.write_text(json.dumps({**json.loads(metrics_file.read_text()), "unsmoothed.smoothing.gamma": 1.0}))
    text = make_report([sweep], out_dir=tmp_path / "no_baseline").markdown.read_text()
    assert "| digits | 0.5 | 21.00 | 10.00 | – | – | – (no baseline runs) |" in text and "nan" not in text


def test_two_class_lognorm_ranks_nothing_and_a_diverged_row_is_nan() -> None:
    """With two classes the normalised confidence is one constant: its AURC is the error rate and its AUGRC half of
    it (the tie rule), whatever the rounding of each row, and p is the grid's first; a row of non-finite logits
    makes the metrics NaN, as its NLL does."""
    import torch

    from labelsmooth.calibration.post_hoc import post_hoc_metrics

    rng = np.random.default_rng(10)
    target = rng.integers(0, 2, 1000)
    margin = rng.normal(1.5, 2.0, 1000) * np.where(target == 1, 1.0, -1.0)
    logits = torch.tensor(np.stack([np.zeros(1000), margin], axis=1), dtype=torch.float32)
    target = torch.tensor(target)
    values = post_hoc_metrics(logits[:500], target[:500], logits[500:], target[500:], n_bins=15)
    error_rate = float((logits[500:].argmax(dim=1) != target[500:]).double().mean())
    assert values["lognorm_p"] == 1.0
    assert values["test/aurc_lognorm"] == pytest.approx(error_rate, abs=1e-12)
    assert values["test/augrc_lognorm"] == pytest.approx(error_rate / 2, abs=1e-12)
    three = torch.tensor(rng.normal(size=(200, 3)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 3, 200))
    three[:20, 0] = float("nan")
    values = post_hoc_metrics(three, labels, three, labels, n_bins=15)
    assert np.isnan(values["test/aurc_lognorm"]) and np.isnan(values["test/augrc_lognorm"])

"""Per-class accuracy (``val/acc_per_class``, ``test/acc_per_class``, ``test/acc_worst_class``), the confusion
matrix figure and the report's per-class table."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from labelsmooth.runs.layout import RunDirectory
from tests.conftest import TrainedRun
from tests.test_evaluation_metrics import ThreeClasses, small_module, small_trainer
from tests.test_report import completed, write_job


def per_class_accuracy(logits: np.ndarray, targets: np.ndarray, k: int) -> list[float | None]:
    predicted = logits.argmax(axis=1)
    return [float(np.mean(predicted[targets == c] == c)) if np.any(targets == c) else None for c in range(k)]


def test_per_class_accuracy_is_recomputed_from_the_saved_predictions(trained_run: TrainedRun) -> None:
    summary = trained_run.summary
    run = RunDirectory(trained_run.directory)
    metrics = json.loads(run.metrics_json.read_text())
    for split in ("val", "test"):
        with np.load(run.predictions(split)) as saved:
            expected = per_class_accuracy(saved["logits"], saved["targets"], 10)
        recorded = metrics[f"{split}/acc_per_class"]
        assert len(recorded) == 10
        assert recorded == pytest.approx(expected, abs=1e-6), split
    worst = min(a for a in metrics["test/acc_per_class"] if a is not None)
    assert metrics["test/acc_worst_class"] == pytest.approx(worst, abs=1e-6)
    assert summary["test/acc_worst_class"] == pytest.approx(worst, abs=1e-6)
    assert run.confusion_matrix_png.read_bytes()[:4] == b"\x89PNG"


def test_a_class_absent_from_the_split_is_null_and_not_the_worst(tmp_path: Path) -> None:
    data = ThreeClasses()
    keep = torch.nonzero(data.target != 2).flatten()
    subset = torch.utils.data.Subset(data, keep.tolist())
    loader = torch.utils.data.DataLoader(subset, batch_size=16)
    module = small_module()
    trainer = small_trainer([])
    trainer.validate(module, loader, verbose=False)
    results = trainer.test(module, loader, verbose=False)[0]
    record = module.per_class_record()
    assert record["test/acc_per_class"][2] is None and record["val/acc_per_class"][2] is None
    with torch.no_grad():
        logits = module.net(data.inputs[keep])
    expected = per_class_accuracy(logits.numpy(), data.target[keep].numpy(), 3)
    assert record["test/acc_per_class"] == pytest.approx(expected)
    assert record["test/acc_worst_class"] == pytest.approx(min(expected[:2]))
    assert results["test/acc_worst_class"] == pytest.approx(min(expected[:2]))
    assert module.test_confusion_matrix.sum() == len(keep) and module.test_confusion_matrix[2].sum() == 0
    assert not any("confusion" in key for key in module.state_dict())  # not in the checkpoints


def test_a_confusion_matrix_that_cannot_be_drawn_is_skipped_with_a_warning(tmp_path: Path, caplog, monkeypatch) -> None:
    from labelsmooth.callbacks import CalibrationCallback
    from labelsmooth.callbacks import calibration as calibration_module

    def broken(*args, **kwargs):
        raise RuntimeError("no backend\nsecond line")

    monkeypatch.setattr(calibration_module, "confusion_figure", broken)
    loader = torch.utils.data.DataLoader(ThreeClasses(), batch_size=16)
    trainer = small_trainer([CalibrationCallback(output_dir=str(tmp_path))])
    with caplog.at_level(logging.WARNING, logger="labelsmooth.callbacks.calibration"):
        trainer.test(small_module(), loader, verbose=False)
    warnings = [r.getMessage() for r in caplog.records if "confusion matrix" in r.getMessage()]
    assert warnings == ["Skipped the test confusion matrix: RuntimeError: no backend"]
    assert not RunDirectory(tmp_path).confusion_matrix_png.exists()
    assert RunDirectory(tmp_path).reliability_png("test").is_file()  # the other figures are still drawn

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(calibration_module, "confusion_figure", full)
    trainer = small_trainer([CalibrationCallback(output_dir=str(tmp_path))])
    with pytest.raises(OSError):
        trainer.test(small_module(), loader, verbose=False)


def test_the_confusion_figure_is_drawn_for_many_classes(tmp_path: Path) -> None:
    from labelsmooth.calibration.confusion import confusion_figure, row_normalised
    from labelsmooth.runs.files import save_figure_atomic

    counts = np.random.default_rng(0).integers(0, 5, size=(100, 100))
    counts[3] = 0  # a class without samples
    rates = row_normalised(counts)
    assert np.allclose(rates[np.arange(100) != 3].sum(axis=1), 1.0) and not rates[3].any()
    png = save_figure_atomic(confusion_figure(counts, [f"c{i}" for i in range(100)]), tmp_path / "cm.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    small = confusion_figure(np.eye(3, dtype=int) * 4, ["cat", "dog", "bird"])
    assert len(small.axes[0].texts) == 3  # the per-cell values, below 20 classes


def test_report_per_class_table_has_the_means_over_seeds(tmp_path: Path) -> None:
    from tests.report_helpers import make_report

    sweep = tmp_path / "multirun" / "2026-01-03" / "00-00-00"
    per_class = {
        ("none", 0): [0.9, 0.5, 0.7],
        ("none", 1): [0.8, 0.7, None],
        ("uniform", 0): [0.6, 0.9, 0.8],
        ("uniform", 1): [0.8, 0.7, 0.6],
    }
    for number, ((name, seed), accuracies) in enumerate(per_class.items()):
        metrics = {**completed(0.9, seed, 0.8, 0.1, 0.05), "smoothing": name, "test/acc_per_class": accuracies}
        write_job(sweep, number, 0.9, seed, metrics)
    report = make_report([sweep], parameter="smoothing")
    (table,) = report.per_class
    assert table.row == "digits" and table.classes == [0, 1, 2] and table.parameter_values == ["none", "uniform"]
    assert table.estimate("none", 0).mean == pytest.approx(0.85)
    assert table.estimate("none", 2).mean == pytest.approx(0.7) and table.estimate("none", 2).n == 1
    assert table.estimate("uniform", 1).mean == pytest.approx(0.8)
    assert table.estimate("none", None).mean == pytest.approx(((0.9 + 0.5 + 0.7) / 3 + 0.75) / 2)
    text = report.markdown.read_text()
    assert "## Per-class test accuracy by smoothing (`test/acc_per_class`)" in text
    assert "| smoothing | class 0 | class 1 | class 2 | mean over classes |" in text
    assert "| none | 85.00 ± 63.53 (n=2) | 60.00 ± 127.06 (n=2) | 70.00 (n=1) |" in text
    assert (sweep / "table_test_acc_per_class.csv").is_file()

    # Jobs that record their data set's class names (their own folders) show them
    for number in range(4):
        metrics = json.loads((sweep / str(number) / "metrics.json").read_text())
        (sweep / str(number) / "metrics.json").write_text(json.dumps({**metrics, "class_names": ["cat", "dog", "owl"]}))
    report = make_report([sweep], parameter="smoothing")
    assert "| smoothing | cat | dog | owl | mean over classes |" in report.markdown.read_text()
    rows = (sweep / "table_test_acc_per_class.csv").read_text().splitlines()
    assert rows[0].startswith("row,smoothing,class,class_name,mean,") and ",none,1,dog," in rows[2]


def test_report_per_class_table_shows_the_worst_ten_of_the_baseline_for_many_classes(tmp_path: Path) -> None:
    from tests.report_helpers import make_report

    sweep = tmp_path / "multirun" / "2026-01-04" / "00-00-00"
    k = 30
    baseline = [0.5 + 0.01 * ((7 * c) % k) for c in range(k)]  # a permutation: worst classes 0, 13, 26, ...
    for number, (gamma, seed) in enumerate([(1.0, 0), (1.0, 1), (0.5, 0)]):
        accuracies = baseline if gamma == 1.0 else [0.9] * k
        write_job(
            sweep, number, gamma, seed, {**completed(gamma, seed, 0.8, 0.1, 0.05), "test/acc_per_class": accuracies}
        )
    report = make_report([sweep])
    (table,) = report.per_class
    assert table.reference == 1.0 and table.worst_only and len(table.classes) == 10
    expected = sorted(range(k), key=lambda c: baseline[c])[:10]
    assert table.classes == expected
    assert table.estimate(1.0, None).mean == pytest.approx(sum(baseline) / k)
    text = report.markdown.read_text()
    assert f"the 10 worst of {k} classes at γ = 1, chosen on these test numbers" in text  # no validation recorded
    header = "| γ | " + " | ".join(f"class {c}" for c in expected) + " | mean over classes |"
    assert header in text


def test_report_per_class_table_chooses_the_worst_classes_on_validation(tmp_path: Path) -> None:
    """Classes chosen for their low test accuracy at the baseline look better under any other γ by chance alone
    (regression to the mean): the worst ten are those of the baseline's validation accuracy."""
    from tests.report_helpers import make_report

    sweep = tmp_path / "multirun" / "2026-01-05" / "00-00-00"
    k = 30
    test = [0.5 + 0.01 * ((7 * c) % k) for c in range(k)]  # worst on test: 0, 13, 26, ...
    validation = [0.5 + 0.01 * ((11 * c) % k) for c in range(k)]  # worst on validation: 0, 11, 22, ...
    for number, (gamma, seed) in enumerate([(1.0, 0), (1.0, 1), (0.5, 0)]):
        recorded = {"test/acc_per_class": test, "val/acc_per_class": validation} if gamma == 1.0 else {}
        recorded = recorded or {"test/acc_per_class": [0.9] * k, "val/acc_per_class": [0.9] * k}
        write_job(sweep, number, gamma, seed, {**completed(gamma, seed, 0.8, 0.1, 0.05), **recorded})
    report = make_report([sweep])
    (table,) = report.per_class
    assert table.chosen_on == "validation"
    assert (
        table.classes
        == sorted(range(k), key=lambda c: validation[c])[:10]
        != sorted(range(k), key=test.__getitem__)[:10]
    )
    text = report.markdown.read_text()
    assert f"the 10 worst of {k} classes at γ = 1\n" in text and "chosen on these test numbers" not in text

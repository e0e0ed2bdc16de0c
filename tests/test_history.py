"""Every run keeps its training curve in ``history.csv``, and the report draws a sweep's learning curves from it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from labelsmooth.report.curves import seed_band
from labelsmooth.runs.history import read_history_csv, write_history_csv
from labelsmooth.runs.layout import RunDirectory
from tests.conftest import TrainedRun
from tests.report_helpers import make_report
from tests.test_report import completed, write_job


def test_a_run_keeps_its_training_curve_one_row_per_epoch(trained_run: TrainedRun) -> None:
    run = RunDirectory(trained_run.directory)
    metrics = json.loads(run.metrics_json.read_text())
    rows = read_history_csv(run.history_csv)
    assert [row["epoch"] for row in rows] == list(range(metrics["epochs"]))
    steps = [row["step"] for row in rows]
    assert steps == sorted(steps) and steps[0] > 0
    for row in rows:
        assert {"train/loss", "val/acc", "val/nll", "val/ece", "val/acc_best"} <= row.keys()
        assert {"lr-Adam/pg1", "lr-Adam/pg2"} <= row.keys()  # the ResNet's two parameter groups (L2 and none)
    # The best validation accuracy is the curve's best, at the epoch metrics.json records.
    best = max(rows, key=lambda row: row["val/acc"])
    assert best["val/acc"] == pytest.approx(metrics["val/acc_best"], abs=1e-7)
    assert best["epoch"] == metrics["val/acc_best_epoch"]


def test_history_csv_round_trip_and_damage(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    rows = [{"epoch": 0, "step": 5, "train/loss": 0.1 + 0.2, "val/acc": 0.5}]
    rows.append({"epoch": 1, "step": 9, "train/loss": 1e-9})
    write_history_csv(path, rows)
    assert read_history_csv(path) == rows  # every float exactly; an epoch without validation has no val/acc
    path.write_text("epoch,step,val/acc\n0,5,0.5\n1,10\n")
    with pytest.raises(ValueError, match=r"history\.csv, line 3: 2 cells under a header of 3"):
        read_history_csv(path)
    path.write_text("loss\n0.5\n")
    with pytest.raises(ValueError, match="is not a history.csv"):
        read_history_csv(path)


def test_seed_band_is_the_mean_and_range_over_the_seeds_with_each_epoch() -> None:
    seeds = [
        [{"epoch": 0, "step": 1, "val/acc": 0.2}, {"epoch": 1, "step": 2, "val/acc": 0.4}],
        [{"epoch": 0, "step": 1, "val/acc": 0.6}, {"epoch": 1, "step": 2}, {"epoch": 2, "step": 3, "val/acc": 0.9}],
    ]
    band = seed_band(seeds, "val/acc")
    assert band is not None and band.runs == 2 and band.epochs == [0, 1, 2]
    assert band.mean == pytest.approx([0.4, 0.4, 0.9]) and band.low == [0.2, 0.4, 0.9] and band.high == [0.6, 0.4, 0.9]
    assert seed_band(seeds, "val/nll") is None


@pytest.mark.parametrize("diverged_first", [True, False])
def test_a_seed_whose_value_is_nan_does_not_have_that_epoch(diverged_first: bool) -> None:
    """history.csv keeps a diverged epoch's ``nan``: the band is over the other seeds, whatever the seeds' order
    (``min``/``max`` of a list with a NaN depend on where it stands)."""
    seeds = [[{"epoch": 0, "step": 1, "val/nll": math.nan}], [{"epoch": 0, "step": 1, "val/nll": 0.5}]]
    band = seed_band(seeds[::-1] if diverged_first else seeds, "val/nll")
    assert band is not None and (band.mean, band.low, band.high, band.runs) == ([0.5], [0.5], [0.5], 1)


def test_the_report_draws_the_learning_curves_and_names_a_damaged_history(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for number, (gamma, seed) in enumerate([(0.5, 0), (0.5, 1), (1.0, 0), (1.0, 1)]):
        job = write_job(sweep, number, gamma, seed, completed(gamma, seed, 0.9, 0.1, 0.05))
        history = [{"epoch": e, "step": 10 * (e + 1), "val/acc": 0.5 + 0.1 * e, "val/nll": 1.0 / (e + 1),
                    "train/loss": 2.0 - e} for e in range(3)]  # fmt: skip
        write_history_csv(RunDirectory(job).history_csv, history)
    RunDirectory(sweep / "3").history_csv.write_text("epoch,step\n0\n")
    report = make_report([sweep], plots=True)
    assert (sweep / "curves_digits.png").read_bytes()[:4] == b"\x89PNG"
    text = report.markdown.read_text()
    assert "![curves_digits](curves_digits.png)" in text
    assert f"{sweep / '3' / 'history.csv'}: " in text and "left out of the learning curves" in text


def test_the_learning_curves_of_jobs_that_did_not_validate_draw_the_other_panels(tmp_path: Path) -> None:
    """A row whose jobs record no validation metric (validation off, or a history from before it was kept): that
    panel says so instead of ending the report in matplotlib's 'Axis limits cannot be NaN or Inf'."""
    sweep = tmp_path / "sweep"
    for number, seed in enumerate((0, 1)):
        job = write_job(sweep, number, 0.9, seed, completed(0.9, seed, 0.9, 0.1, 0.05))
        write_history_csv(RunDirectory(job).history_csv, [{"epoch": 0, "step": 10, "train/loss": 2.0 - seed}])
    make_report([sweep], plots=True)
    assert (sweep / "curves_digits.png").read_bytes()[:4] == b"\x89PNG"

"""The report's analyses beyond accuracy and ECE: selective classification (AURC / AUGRC tables, risk–coverage
curves from saved predictions), smooth and class-wise ECE tables, runs still improving at their last epoch, the
penultimate-layer grid and the distillation table.

Each test writes run directories in the report's input format (metrics.json, ``predictions/test.npz``,
``penultimate_projection.png``) with chosen numbers, and checks the report against numbers computed here.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from labelsmooth.report.jobs import collect
from labelsmooth.report.penultimate import penultimate_images
from labelsmooth.report.risk_coverage import risk_coverage_curves
from tests.report_helpers import make_report

T_975_DF1 = 12.706204736174698  # Student t quantile 0.975, 1 degree of freedom
T_975_DF2 = 4.302652729911275
SMOOTH_ECE = (0.011, 0.025, 0.018, 0.04, 0.061, 0.052)  # of the jobs 0-5 of the selective sweep


def write_run(sweep: Path, number: int, overrides: list[str], metrics: dict) -> Path:
    job = sweep / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    base = {"status": "completed", "dataset": "digits", "model": "mlp", "test/ece": 0.1, "test/ece_ts": 0.05}
    (job / "metrics.json").write_text(json.dumps({**base, **metrics}))
    return job


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def risk_by_hand(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Selective risk at coverage i/N, i = 1..N: errors among the i most confident (max softmax) divided by i."""
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    order = np.argsort(-probabilities.max(axis=1))
    wrong = (probabilities.argmax(axis=1) != targets)[order]
    return np.array([wrong[: i + 1].sum() / (i + 1) for i in range(len(wrong))])


@pytest.fixture
def selective_sweep(tmp_path: Path) -> tuple[Path, dict[tuple[float, int], np.ndarray]]:
    """γ ∈ {0.5, 1} × seeds 0-2, each with 40 saved test predictions (4 classes) and the metrics computed here."""
    sweep = tmp_path / "sweep"
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, size=40).astype(np.int64)  # one test set, as in a real sweep
    risks = {}
    for number, (gamma, seed) in enumerate((g, s) for g in (0.5, 1.0) for s in range(3)):
        logits = rng.normal(size=(40, 4)).astype(np.float32)
        logits[np.arange(40), targets] += 1.5 if gamma == 0.5 else 0.5  # γ = 0.5 is more accurate here
        risk = risk_by_hand(logits.astype(np.float64), targets)
        risks[(gamma, seed)] = risk
        metrics = {
            "smoothing": "gamma", "smoothing.gamma": gamma, "seed": seed, "val/acc_best": 0.9 + 0.02 * (gamma == 0.5),
            "test/aurc": float(risk.mean()), "test/augrc": float((risk * np.arange(1, 41) / 40).mean()),
            "test/smooth_ece": SMOOTH_ECE[number], "test/classwise_ece": 2 * SMOOTH_ECE[number],
        }  # fmt: skip
        job = write_run(sweep, number, [f"smoothing.gamma={gamma}", f"seed={seed}"], metrics)
        (job / "predictions").mkdir()
        np.savez(job / "predictions" / "test.npz", logits=logits, targets=targets)
    return sweep, risks


def test_aurc_augrc_and_the_new_ece_tables_have_intervals_over_seeds(selective_sweep) -> None:
    sweep, risks = selective_sweep
    report = make_report([sweep])
    for slug, of_run in (
        ("test_aurc", lambda risk: risk.mean()),
        ("test_augrc", lambda risk: (risk * np.arange(1, 41) / 40).mean()),
    ):
        rows = {float(r["smoothing.gamma"]): r for r in read_csv(sweep / f"table_{slug}.csv")}
        for gamma in (0.5, 1.0):
            values = [of_run(risks[(gamma, seed)]) for seed in range(3)]
            assert float(rows[gamma]["mean"]) == pytest.approx(np.mean(values), abs=1e-12)
            half_width = T_975_DF2 * np.std(values, ddof=1) / math.sqrt(3)
            assert float(rows[gamma]["ci95_half_width"]) == pytest.approx(half_width, rel=1e-9)
            assert rows[gamma]["n"] == "3" and rows[gamma]["seeds"] == "0;1;2"
    (aurc_best,) = read_csv(sweep / "best_vs_baseline_test_aurc.csv")
    assert float(aurc_best["best_smoothing.gamma"]) == 0.5  # the γ of the best val/acc_best, not of the test AURC
    smooth = {float(r["smoothing.gamma"]): float(r["mean"]) for r in read_csv(sweep / "table_test_smooth_ece.csv")}
    assert smooth == {0.5: pytest.approx(0.018), 1.0: pytest.approx(0.051)}
    classwise = read_csv(sweep / "table_test_classwise_ece.csv")
    assert {float(r["smoothing.gamma"]): float(r["mean"]) for r in classwise} == {
        0.5: pytest.approx(0.036),
        1.0: pytest.approx(0.102),
    }
    text = report.markdown.read_text()
    for title in ("Test AURC, max-softmax confidence (%)", "Test AUGRC", "Test smooth ECE (%)", "class-wise ECE"):
        assert title in text
    assert "after temperature scaling (%) by γ (`test/smooth_ece_ts`)" not in text  # no job has it: not shown
    assert not (sweep / "table_test_smooth_ece_ts.csv").exists()
    runs = read_csv(sweep / "runs.csv")
    assert float(runs[0]["test/aurc"]) == pytest.approx(risks[(0.5, 0)].mean())


def test_a_test_metrics_table_3_compares_the_value_validation_chose(tmp_path: Path) -> None:
    """γ = 0.8 has the best validation accuracy, γ = 0.5 the best test accuracy: the test tables' Table 3 compares
    γ = 0.8 (chosen without the test split), the validation table's its own best."""
    sweep = tmp_path / "sweep"
    val = {0.5: 0.90, 0.8: 0.95, 1.0: 0.91}
    test = {0.5: 0.97, 0.8: 0.93, 1.0: 0.92}
    for number, (gamma, seed) in enumerate((g, s) for g in val for s in range(3)):
        metrics = {"smoothing.gamma": gamma, "seed": seed, "val/acc_best": val[gamma] + 0.001 * seed}
        metrics |= {"test/acc": test[gamma] - 0.002 * seed, "test/ece": 0.1 - 0.01 * (gamma == 0.5)}
        write_run(sweep, number, [f"smoothing.gamma={gamma}", f"seed={seed}"], metrics)
    report = make_report([sweep])
    for slug in ("val_acc_best", "test_acc", "test_ece"):
        (row,) = read_csv(sweep / f"best_vs_baseline_{slug}.csv")
        assert float(row["best_smoothing.gamma"]) == 0.8, slug
    text = report.markdown.read_text()
    assert "best γ (highest mean) vs γ = 1" in text and "best γ by val/acc_best vs γ = 1" in text


def test_a_chosen_parameter_that_pools_another_varied_key_says_so(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for number, (gamma, epochs) in enumerate((g, e) for g in (0.5, 1.0) for e in (2, 4)):
        overrides = [f"smoothing.gamma={gamma}", "seed=0", f"trainer.max_epochs={epochs}"]
        write_run(sweep, number, overrides, {"smoothing.gamma": gamma, "seed": 0, "val/acc_best": 0.9})
    report = make_report([sweep], parameter="smoothing.gamma")
    assert report.pooled == ["trainer.max_epochs"] and len(report.duplicates) == 2
    assert "**Pooled:** the jobs also differ in `trainer.max_epochs`, not only in" in report.markdown.read_text()
    # strategies by name: a strategy's parameter pooled within its column, not when it differs between columns
    by_name = tmp_path / "by_name"
    for number, (name, value) in enumerate((("gamma", 0.8), ("gamma", 0.9), ("uniform", 0.1))):
        key = "smoothing.gamma" if name == "gamma" else "smoothing.epsilon"
        overrides = [f"smoothing={name}", f"{key}={value}", f"seed={number}"]
        write_run(by_name, number, overrides, {"smoothing": name, key: value, "seed": number, "val/acc_best": 0.9})
    assert make_report([by_name], parameter="smoothing").pooled == ["smoothing.gamma"]


def test_the_report_names_the_bins_of_its_calibration_errors(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for number, gamma in enumerate((0.5, 1.0)):
        write_run(sweep, number, [f"smoothing.gamma={gamma}"], {"smoothing.gamma": gamma, "seed": 0, "n_bins": 10})
    assert "use 10 equal-width bins (`n_bins`)" in make_report([sweep]).markdown.read_text()
    write_run(sweep, 2, ["smoothing.gamma=0.8"], {"smoothing.gamma": 0.8, "seed": 0, "n_bins": 15})
    text = make_report([sweep]).markdown.read_text()
    assert "**The jobs bin their calibration errors differently** (`n_bins` = 10, 15)" in text


def test_risk_coverage_curves_are_the_seeds_mean_of_the_saved_predictions(selective_sweep) -> None:
    sweep, risks = selective_sweep
    jobs, _, _ = collect([sweep])
    curves = risk_coverage_curves(jobs, "smoothing.gamma")
    assert list(curves) == ["digits"] and list(curves["digits"]) == [0.5, 1.0]
    for gamma, curve in curves["digits"].items():
        assert curve.runs == 3
        np.testing.assert_allclose(curve.coverage, np.arange(1, 41) / 40)
        np.testing.assert_allclose(curve.risk, np.mean([risks[(gamma, s)] for s in range(3)], axis=0), atol=1e-12)
        # the area under the mean curve is the mean AURC of the table
        assert curve.risk.mean() == pytest.approx(np.mean([risks[(gamma, s)].mean() for s in range(3)]), abs=1e-12)
    report = make_report([sweep], plots=True)
    assert (sweep / "risk_coverage_digits.png").read_bytes()[:4] == b"\x89PNG"
    assert "![risk_coverage_digits](risk_coverage_digits.png)" in report.markdown.read_text()


def test_a_damaged_predictions_file_is_left_out_of_the_curves(selective_sweep) -> None:
    sweep, risks = selective_sweep
    (sweep / "0" / "predictions" / "test.npz").write_bytes(b"not a zip")
    np.savez(sweep / "1" / "predictions" / "test.npz", logits=np.zeros((3, 4), np.float32), targets=np.zeros(5))
    jobs, _, _ = collect([sweep])
    curve = risk_coverage_curves(jobs, "smoothing.gamma")["digits"][0.5]
    assert curve.runs == 1
    np.testing.assert_allclose(curve.risk, risks[(0.5, 2)], atol=1e-12)


def test_runs_still_improving_at_their_last_epoch_are_marked(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    # (γ, seed): (val/acc_best, best epoch, epochs); the best epoch is 0-based, so best = epochs - 1 is the last one.
    runs = {(0.5, 0): (0.90, 2, 3), (0.5, 1): (0.92, 0, 3), (1.0, 0): (0.85, 1, 3), (1.0, 1): (0.87, None, None)}
    for number, ((gamma, seed), (acc, best, epochs)) in enumerate(runs.items()):
        metrics = {"smoothing.gamma": gamma, "seed": seed, "val/acc_best": acc, "unsmoothed.smoothing.gamma": 1.0}
        if best is not None:
            metrics |= {"val/acc_best_epoch": best, "epochs": epochs}
        write_run(sweep, number, [f"smoothing.gamma={gamma}", f"seed={seed}"], metrics)
    report = make_report([sweep])
    accuracy = report.tables[0]
    assert accuracy.still_improving("digits", 0.5) == 1 and accuracy.still_improving("digits", 1.0) == 0
    text = report.markdown.read_text()
    assert "| digits | 91.00 ± 12.71 (n=2) ↑1 | 86.00 ± 12.71 (n=2) |" in text
    assert "↑k: k of the n seeds were still improving" in text
    assert "| digits | 0.5 | 91.00 ± 12.71 (n=2) ↑1 | 86.00 ± 12.71 (n=2) | 5.49 | 2 |" in text  # Table 3 too
    ece = text.split("(`test/ece`)", 1)[1].split("###", 1)[0]
    assert "↑" not in ece  # only accuracy cells are marked
    flags = {r["directory"].rsplit("/", 1)[-1]: r["still_improving"] for r in read_csv(sweep / "runs.csv")}
    assert flags == {"0": "true", "1": "false", "2": "false", "3": ""}
    assert "Baseline: γ = 1, the value at which the jobs' strategy does not smooth" in text


def solid_png(path: Path, rgb: tuple[float, float, float]) -> None:
    import matplotlib.image

    matplotlib.image.imsave(path, np.tile(np.array(rgb, dtype=np.float64), (20, 20, 1)))


def test_the_penultimate_grid_shows_the_first_seed_of_each_value(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    colours = {(0.5, 1): (0, 0, 1), (0.5, 0): (1, 0, 0), (1.0, 0): (0, 1, 0), (1.0, 2): (0, 0, 1)}  # seed 0 not blue
    for number, ((gamma, seed), rgb) in enumerate(colours.items()):
        metrics = {"smoothing.gamma": gamma, "seed": seed, "val/acc_best": 0.9}
        job = write_run(sweep, number, [f"smoothing.gamma={gamma}", f"seed={seed}"], metrics)
        solid_png(job / "penultimate_projection.png", rgb)
    write_run(sweep, 4, ["smoothing.gamma=0.8", "seed=0"], {"smoothing.gamma": 0.8, "seed": 0, "val/acc_best": 0.9})
    jobs, _, _ = collect([sweep])
    chosen = penultimate_images(jobs, "smoothing.gamma")
    assert {v: job.directory.name for v, job in chosen["digits"].items()} == {0.5: "1", 1.0: "2"}  # no image at 0.8
    report = make_report([sweep], plots=True)
    assert "![penultimate_digits](penultimate_digits.png)" in report.markdown.read_text()
    import matplotlib.image

    pixels = matplotlib.image.imread(sweep / "penultimate_digits.png")[..., :3]
    red = (pixels[..., 0] > 0.9) & (pixels[..., 1] < 0.1) & (pixels[..., 2] < 0.1)
    green = (pixels[..., 1] > 0.9) & (pixels[..., 0] < 0.1) & (pixels[..., 2] < 0.1)
    blue = (pixels[..., 2] > 0.9) & (pixels[..., 0] < 0.1) & (pixels[..., 1] < 0.1)
    assert red.sum() > 100 and green.sum() > 100 and blue.sum() == 0  # the seed-0 images, not the others


def test_student_accuracy_by_the_teachers_smoothing(tmp_path: Path) -> None:
    sweep = tmp_path / "students"
    students = {  # (teacher strategy, its parameters): student test accuracy of seeds 0 and 1
        ("gamma", (("teacher.smoothing.gamma", 0.8),)): (0.80, 0.82),
        ("gamma", (("teacher.smoothing.gamma", 1.0),)): (0.84, 0.88),
        ("none", ()): (0.90, 0.91),
    }
    number = 0
    for (teacher, parameters), accuracies in students.items():
        for seed, acc in enumerate(accuracies):
            metrics = {
                "seed": seed,
                "val/acc_best": 0.9,
                "test/acc": acc,
                "teacher.smoothing": teacher,
                **dict(parameters),
            }
            if teacher == "none":
                metrics |= {"val/acc_best_epoch": 4, "epochs": 5}  # still improving
            write_run(sweep, number, [f"teacher_ckpt=t{number}.ckpt", f"seed={seed}"], metrics)
            number += 1
    write_run(sweep, number, ["teacher_ckpt=none", "seed=0"], {"seed": 0, "val/acc_best": 0.9, "test/acc": 0.5})
    report = make_report([sweep])
    table = report.distillation
    assert table.columns == ["gamma (γ=0.8)", "gamma (γ=1)", "none"] and list(table.values) == ["digits (mlp)"]
    assert table.estimate("digits (mlp)", "gamma (γ=1)").mean == pytest.approx(0.86)
    assert table.estimate("digits (mlp)", "gamma (γ=1)").half_width == pytest.approx(T_975_DF1 * 0.02)
    text = report.markdown.read_text()
    assert "| student | gamma (γ=0.8) | gamma (γ=1) | none |" in text
    assert "| digits (mlp) | 81.00 ± 12.71 (n=2) | 86.00 ± 25.41 (n=2) | 90.50 ± 6.35 (n=2) ↑2 |" in text
    rows = {r["teacher"]: r for r in read_csv(sweep / "table_distillation_test_acc.csv")}
    assert set(rows) == {"gamma (γ=0.8)", "gamma (γ=1)", "none"} and rows["none"]["n"] == "2"
    assert float(rows["gamma (γ=0.8)"]["mean"]) == pytest.approx(0.81)
    assert make_report([tmp_path / "students" / "6"], out_dir=tmp_path / "one").distillation is None  # no teacher


def test_students_of_other_teachers_or_temperatures_are_never_one_cell(tmp_path: Path) -> None:
    """--param distill.temperature: students of two teachers with the same temperature and seed are not duplicates
    of each other, and each temperature keeps its own column."""
    sweep = tmp_path / "students"
    teachers = {"a.ckpt": ("gamma", {"teacher.smoothing.gamma": 0.8}), "b.ckpt": ("none", {})}
    number = 0
    for checkpoint, (teacher, parameters) in teachers.items():
        for temperature in (1, 4):
            for seed in (0, 1):
                acc = 0.8 + 0.05 * (teacher == "none") + 0.01 * temperature + 0.001 * seed
                metrics = {"seed": seed, "val/acc_best": 0.9, "test/acc": acc, "teacher.smoothing": teacher}
                metrics["distill.temperature"] = temperature
                overrides = [f"teacher_ckpt={checkpoint}", f"distill.temperature={temperature}", f"seed={seed}"]
                write_run(sweep, number, overrides, metrics | parameters)
                number += 1
    table = make_report([sweep], parameter="distill.temperature").distillation
    expected = [f"{teacher} · distill.temperature={t}" for teacher in ("gamma (γ=0.8)", "none") for t in (1, 4)]
    assert table.columns == expected
    for teacher, base in (("gamma (γ=0.8)", 0.8), ("none", 0.85)):
        for t in (1, 4):
            estimate = table.estimate("digits (mlp)", f"{teacher} · distill.temperature={t}")
            assert estimate.n == 1 and estimate.mean == pytest.approx(base + 0.01 * t + 0.0005)  # one teacher


def test_students_of_one_teacher_are_one_replicate_of_its_setting(tmp_path: Path) -> None:
    """Two teachers of one setting, three students each: the students share their teacher, so the cell is over the
    two teachers' means (n=2, t with 1 degree of freedom), not over six students as if independent, whose interval
    would be far too narrow when the teachers differ more than their students."""
    sweep = tmp_path / "students"
    accuracies = {"/t/a.ckpt": (0.900, 0.901, 0.899), "/t/b.ckpt": (0.800, 0.801, 0.799)}
    number = 0
    for checkpoint, students in accuracies.items():
        for seed, acc in enumerate(students):
            metrics = {"seed": seed, "val/acc_best": 0.9, "test/acc": acc, "teacher.smoothing": "none"}
            metrics["teacher.checkpoint"] = checkpoint  # as the student records it, whatever teacher_ckpt said
            write_run(sweep, number, [f"teacher_ckpt=elsewhere/{number}.ckpt", f"seed={seed}"], metrics)
            number += 1
    report = make_report([sweep])
    estimate = report.distillation.estimate("digits (mlp)", "none")
    assert estimate.n == 2 and estimate.mean == pytest.approx(0.85)
    assert estimate.half_width == pytest.approx(T_975_DF1 * np.std([0.9, 0.8], ddof=1) / np.sqrt(2))
    (row,) = read_csv(sweep / "table_distillation_test_acc.csv")
    assert (row["n"], row["teachers"]) == ("2", "/t/a.ckpt;/t/b.ckpt")


def test_a_key_that_changes_with_the_parameter_is_named_and_a_null_metric_listed(tmp_path: Path) -> None:
    """γ = 0.8 ran only with lr 0.1 and γ = 1 only with lr 0.01: no cell pools them, but the columns differ in
    both, which the report says. A completed job whose test/ece_ts is null is listed, not silently left out."""
    sweep = tmp_path / "sweep"
    for number, (gamma, lr) in enumerate(((0.8, 0.1), (1.0, 0.01))):
        for seed in (0, 1):
            metrics = {"smoothing.gamma": gamma, "seed": seed, "val/acc_best": 0.9, "test/acc": 0.9}
            if (gamma, seed) == (0.8, 1):
                metrics["test/ece_ts"] = None
            overrides = [f"smoothing.gamma={gamma}", f"optimizer.lr={lr}", f"seed={seed}"]
            write_run(sweep, 2 * number + seed, overrides, metrics)
    report = make_report([sweep], parameter="smoothing.gamma")
    assert report.pooled == ["optimizer.lr"]
    assert "**Pooled:** the jobs also differ in `optimizer.lr`, not only in" in report.markdown.read_text()
    (listed,) = [p for p in report.problems if "test/ece_ts" in p]
    assert listed == f"{sweep / '1'}: test/ece_ts is null in metrics.json; left out of its table"

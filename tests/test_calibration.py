"""Calibration statistics, temperature scaling and the calibration callback."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from labelsmooth.calibration.binning import binned_statistics, confidences_and_correct, expected_calibration_error
from labelsmooth.calibration.bins import calibration_errors
from labelsmooth.calibration.temperature import fit_temperature, temperature_scaled_metrics
from labelsmooth.runs.layout import RunDirectory
from tests.conftest import run_training
from tests.wandb_records import offline_run_of

# Four two-class predictions: top-1 confidences 0.9 (correct), 0.81 (wrong), 0.61 (correct), 0.55 (correct).
PROBS = torch.tensor([[0.9, 0.1], [0.81, 0.19], [0.39, 0.61], [0.55, 0.45]], dtype=torch.float64)
TARGET = torch.tensor([0, 1, 1, 0])


def test_ece_on_a_hand_computed_example() -> None:
    # 15 equal-width bins of width 1/15 put each confidence in its own bin: ECE = mean |a_i - c_i|.
    expected = (abs(1 - 0.9) + abs(0 - 0.81) + abs(1 - 0.61) + abs(1 - 0.55)) / 4
    assert expected_calibration_error(PROBS.log(), TARGET, n_bins=15) == pytest.approx(expected)
    # 2 equal-width bins: [0, .5) is empty, [.5, 1] holds all: |3/4 - (0.9+0.81+0.61+0.55)/4|.
    assert expected_calibration_error(PROBS.log(), TARGET, n_bins=2) == pytest.approx(abs(0.75 - 2.87 / 4))


def test_adaptive_ece_on_a_hand_computed_example() -> None:
    # 2 equal-mass bins: {0.55, 0.61} (accuracy 1, confidence 0.58) and {0.81, 0.9} (accuracy 0.5, conf. 0.855).
    expected = 0.5 * abs(1 - 0.58) + 0.5 * abs(0.5 - 0.855)
    assert expected_calibration_error(PROBS.log(), TARGET, n_bins=2, equal_mass=True) == pytest.approx(expected)
    bins = binned_statistics(*confidences_and_correct(PROBS.log(), TARGET), n_bins=2, equal_mass=True)
    assert [b.count for b in bins] == [2, 2]
    assert bins[0].lower == pytest.approx(0.55) and bins[0].upper == pytest.approx(0.61)
    # More bins than samples: one sample per bin, the same as mean |a_i - c_i|.
    per_sample = (0.1 + 0.81 + 0.39 + 0.45) / 4
    assert expected_calibration_error(PROBS.log(), TARGET, n_bins=15, equal_mass=True) == pytest.approx(per_sample)


def test_rms_and_max_calibration_error() -> None:
    bins = binned_statistics(*confidences_and_correct(PROBS.log(), TARGET), n_bins=15)
    errors = calibration_errors(bins)
    gaps = [0.1, 0.81, 0.39, 0.45]
    assert errors["mce"] == pytest.approx(0.81)
    assert errors["rmsce"] == pytest.approx(math.sqrt(sum(g * g for g in gaps) / 4))
    assert math.isnan(calibration_errors([])["ece"])


def synthetic_logits(temperature: float, n: int = 20000, k: int = 10, seed: int = 0):
    """Labels drawn from softmax(z): z is calibrated, so the logits ``z * temperature`` need exactly T."""
    generator = torch.Generator().manual_seed(seed)
    z = 2.0 * torch.randn(n, k, generator=generator)
    target = torch.multinomial(z.softmax(-1), 1, generator=generator).squeeze(-1)
    return z * temperature, target


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_temperature_scaling_recovers_a_known_temperature(true_temperature: float) -> None:
    logits, target = synthetic_logits(true_temperature)
    assert fit_temperature(logits, target) == pytest.approx(true_temperature, rel=0.05)


def test_temperature_scaling_improves_nll_and_ece_of_overconfident_logits() -> None:
    val_logits, val_target = synthetic_logits(3.0, seed=1)
    test_logits, test_target = synthetic_logits(3.0, seed=2)
    temperature = fit_temperature(val_logits, val_target)
    before = temperature_scaled_metrics(test_logits, test_target, 1.0)
    after = temperature_scaled_metrics(test_logits, test_target, temperature)
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"] / 3
    assert after["ece"] < 0.02


def test_a_minus_infinite_logit_of_a_wrong_class_is_fitted_and_a_diverged_model_is_not() -> None:
    """``-inf`` for a class that is not the label keeps the NLL finite at every T (``-inf / T = -inf``): the
    temperature is the one fitted without that class's mass, where one such logit made it NaN; a NaN, ``+inf``
    or a ``-inf`` label logit leaves no finite NLL, so no temperature."""
    logits, target = synthetic_logits(2.0, n=2000)
    wrong = (target[0] + 1) % logits.shape[1]
    with_minus_inf = logits.clone()
    with_minus_inf[0, wrong] = -math.inf
    assert fit_temperature(with_minus_inf, target) == pytest.approx(fit_temperature(logits, target), rel=0.01)
    for value, column in ((math.nan, wrong), (math.inf, wrong), (-math.inf, target[0])):
        diverged = logits.clone()
        diverged[0, column] = value
        assert math.isnan(fit_temperature(diverged, target)), (value, column)


def test_fit_temperature_works_under_inference_mode() -> None:
    logits, target = synthetic_logits(2.0, n=2000)
    with torch.inference_mode():
        assert fit_temperature(logits, target) == pytest.approx(2.0, rel=0.1)


def test_training_writes_reliability_diagrams_and_temperature_scaled_metrics(tmp_path: Path) -> None:
    summary = run_training(tmp_path, ["smoothing=gamma", "smoothing.gamma=0.8", "logger=wandb", "figures=true"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(summary))
    for split in ("val", "test"):
        for name in ("ace", "rmsce", "confidence", "entropy"):
            assert 0.0 <= metrics[f"{split}/{name}"] <= math.log(10) + 1e-6
    assert metrics["temperature"] > 0
    for name in ("nll_ts", "ece_ts", "ace_ts", "brier_ts"):
        assert math.isfinite(metrics[f"test/{name}"])
    calibration = tmp_path / "calibration"
    for name in ("reliability_val.png", "reliability_test.png"):
        assert (calibration / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(calibration / "reliability_test.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["split"] for r in rows} == {"test", "test_ts"}
    test_rows = [r for r in rows if r["split"] == "test"]
    total = sum(int(r["count"]) for r in test_rows)
    accuracy = sum(int(r["count"]) * float(r["accuracy"]) for r in test_rows) / total
    assert accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)
    # Scaling does not change predictions: the scaled bins hold the same samples with the same accuracy.
    scaled_rows = [r for r in rows if r["split"] == "test_ts"]
    assert sum(int(r["count"]) for r in scaled_rows) == total
    ece = sum(int(r["count"]) * abs(float(r["accuracy"]) - float(r["confidence"])) for r in scaled_rows) / total
    assert ece == pytest.approx(metrics["test/ece_ts"], abs=1e-4)
    # With W&B (offline here) the diagrams are logged as images and the per-bin numbers as tables.
    media = offline_run_of(tmp_path).files
    for name in ("media/images/test/reliability_diagram", "media/table/test/reliability_bins"):
        assert any(path.startswith(name) for path in media), media


@pytest.mark.slow
def test_eval_py_reproduces_the_test_metrics_of_a_checkpoint(tmp_path: Path) -> None:
    """Train a few batches, then ``python eval.py ckpt_path=<best checkpoint>``: same data, same weights, same
    validation logits, so the same test metrics and the same temperature."""
    from labelsmooth import LabelSmoothingClassifier
    from labelsmooth.cli.build import build_datamodule
    from tests.conftest import compose_train_config, run_app, run_training_with_hydra_config

    run_dir = tmp_path / "run"
    overrides = ["smoothing=gamma", "smoothing.gamma=0.7", "dataset.normalize=pixel_mean"]  # not digits' default
    overrides.append("dataset.split_seed=1")  # not digits' default either: dataset=digits below keeps it
    overrides.append("n_bins=10")  # nor the bins: eval.py takes the run's
    trained = run_training_with_hydra_config(run_dir, overrides)

    def run_eval(output: Path, *extra: str) -> dict:
        args = [f"ckpt_path={trained['checkpoint']}", "trainer.enable_progress_bar=false", f"hydra.run.dir={output}"]
        result = run_app([*args, *extra], tmp_path, script="eval.py")
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads((output / "metrics.json").read_text())

    eval_dir = tmp_path / "eval"
    evaluated = run_eval(eval_dir)
    assert evaluated["status"] == "completed" and evaluated["smoothing.gamma"] == 0.7
    assert evaluated["dataset"] == "digits" and evaluated["checkpoint"] == trained["checkpoint"]
    assert evaluated["n_bins"] == trained["n_bins"] == 10
    for key in ("test/acc", "test/nll", "test/ece", "test/ace", "test/brier", "temperature", "test/ece_ts"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-5), key
    assert (eval_dir / "calibration" / "reliability_test.png").is_file()
    # The evaluation saves the predictions of the same weights on the same data as training's final test.
    assert (
        evaluated["predictions.test"] == "predictions/test.npz"
        and evaluated["predictions.val"] == "predictions/val.npz"
    )
    for split in ("val", "test"):
        with (
            np.load(RunDirectory(eval_dir).predictions(split)) as ours,
            np.load(RunDirectory(run_dir).predictions(split)) as training,
        ):
            np.testing.assert_allclose(ours["logits"], training["logits"], rtol=0, atol=1e-5)
            np.testing.assert_array_equal(ours["targets"], training["targets"])
    assert evaluated["val/acc_best"] == evaluated["val/acc"]  # this evaluation's, not the checkpoint's training best
    # dataset= names the data set afresh but keeps the run's input preprocessing (here per-pixel mean subtraction)
    # and, the data set being the run's, its split: another would test on images the run trained on.
    named = run_eval(tmp_path / "eval_named", "dataset=digits", "figures=false")  # no figure read
    for key in ("test/acc", "test/nll", "test/ece", "temperature"):
        assert named[key] == pytest.approx(trained[key], abs=1e-5), key
    # Another split, given: its inputs are normalised with the statistics of the run's training split, as predict()
    # prepares raw images, not with those of the new training split.
    other_split = tmp_path / "eval_other_split"
    run_eval(other_split, "dataset=digits", "dataset.split_seed=2", "figures=false")
    log = (other_split / "evaluate.log").read_text()
    assert "statistics of the run's training split that the checkpoint records" in log
    assert (  # a split given on the command line wins, with a warning
        "Evaluated on another split than the run's, dataset.split_seed=2 (the run's: 1): its validation and test "
        "images may include images the run trained on" in log
    )
    test_set = build_datamodule(compose_train_config(["dataset.split_seed=2"]).dataset).test_set
    model = LabelSmoothingClassifier.load_from_checkpoint(trained["checkpoint"], map_location="cpu")
    with np.load(RunDirectory(other_split).predictions("test")) as saved:
        np.testing.assert_array_equal(saved["targets"], test_set.targets.numpy())
        expected = model.predict_proba(test_set.images).numpy()
        np.testing.assert_allclose(torch.softmax(torch.from_numpy(saved["logits"]), 1).numpy(), expected, atol=1e-6)
    # Two DDP processes (gloo on CPU) each see part of the data; the callback gathers the logits, so the
    # temperature and the scaled metrics are those of the whole split.
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "figures=false"]
    distributed = run_eval(tmp_path / "eval_ddp", *ddp)
    for key in ("test/acc", "test/ace", "temperature", "test/nll_ts", "test/ece_ts", "test/ace_ts"):
        assert distributed[key] == pytest.approx(evaluated[key], abs=1e-5), key
    for key in ("test/classwise_ece", "test/smooth_ece", "test/aurc", "test/augrc", "test/smooth_ece_ts", "val/aurc"):
        assert distributed[key] == pytest.approx(evaluated[key], abs=1e-5), key
    for key in ("test/aurc_ts", "test/augrc_ts"):  # ranks of the whole split, each sample once (it was twice)
        assert distributed[key] == pytest.approx(evaluated[key], abs=1e-6), key
    # Gathered from both processes and put back in the data set's order (359 test samples: the parts differ by one).
    for split in ("val", "test"):
        with (
            np.load(RunDirectory(tmp_path / "eval_ddp").predictions(split)) as ddp,
            np.load(RunDirectory(eval_dir).predictions(split)) as single,
        ):
            np.testing.assert_allclose(ddp["logits"], single["logits"], rtol=0, atol=1e-5)
            np.testing.assert_array_equal(ddp["targets"], single["targets"])


def test_eval_py_explains_a_checkpoint_without_its_run_config(tmp_path: Path) -> None:
    """A checkpoint that carries no run specification, away from its run's config, is explained as such; a file
    that is no checkpoint at all is called unreadable (a run config would not help it)."""
    from tests.conftest import run_app_in_process

    (tmp_path / "checkpoints").mkdir()
    torch.save({"state_dict": {}}, tmp_path / "checkpoints" / "old.ckpt")
    (tmp_path / "checkpoints" / "x.ckpt").write_bytes(b"not a checkpoint")
    env = {"LABELSMOOTH_ROOT": str(tmp_path)}
    result = run_app_in_process([f"ckpt_path={tmp_path / 'checkpoints' / 'old.ckpt'}"], tmp_path, env, "eval.py")
    assert result.returncode == 1
    assert f"(no run config at {tmp_path / '.hydra' / 'config.yaml'})" in result.stderr
    result = run_app_in_process([f"ckpt_path={tmp_path / 'checkpoints' / 'x.ckpt'}"], tmp_path, env, "eval.py")
    assert result.returncode == 1
    assert "x.ckpt is not a readable checkpoint (" in result.stderr and "no run config" not in result.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ([[0], [1], [2], [3]], r"target has shape \(4, 1\); expected \(4,\)"),
        ([0], r"target has shape \(1,\); expected \(4,\)"),
        ([0, 1, 10, 3], r"target holds class 10; class indices must lie in \[0, 5\)"),
        ([0.0, 1.0, 2.0, 3.0], r"target has dtype torch.float32; expected integer class indices"),
    ],
)
def test_the_metric_functions_refuse_targets_they_would_broadcast_or_count_as_wrong(target: list, message: str) -> None:
    """An (N, 1) target broadcast to (N, N), a label of 10 counted as a wrong prediction in the ECE."""
    from labelsmooth import calibration

    logits = torch.randn(4, 5)
    for name in ("expected_calibration_error", "negative_log_likelihood", "brier_score", "classwise_calibration_error"):
        with pytest.raises(ValueError, match=f"^{name}: {message}"):
            getattr(calibration, name)(logits, torch.tensor(target))


def test_probabilities_given_as_logits_are_named_in_a_warning() -> None:
    """A second softmax of probabilities changes every value (ECE 0.18 from the logits, 0.55 from their softmax)."""
    logits, target = torch.randn(64, 5), torch.randint(0, 5, (64,))
    with pytest.warns(UserWarning, match="^expected_calibration_error: every row of the logits is non-negative and"):
        expected_calibration_error(logits.softmax(dim=-1), target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected_calibration_error(logits, target)


def test_no_samples_give_nan_metrics_not_a_perfect_zero() -> None:
    from labelsmooth.calibration import ClassificationMetrics

    metrics = ClassificationMetrics(5)
    metrics.update(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long))
    assert all(math.isnan(float(value)) for value in metrics.compute().values())


def test_a_temperature_at_its_bound_is_named_in_a_warning() -> None:
    """Every held-out prediction right: the NLL falls as T → 0, so the search stops at its lower bound."""
    logits = torch.randn(50, 5)
    with pytest.warns(UserWarning, match=r"^fit_temperature: the held-out NLL is lowest at the bound T = 0.01"):
        assert fit_temperature(logits, logits.argmax(dim=-1)) == pytest.approx(0.01)
    # Margins so wide that the float64 NLL is 0 well above the bound: the search stopped at T = 0.038, unflagged.
    wide = torch.tensor([[2.0, 0.0]] * 50)
    with pytest.warns(UserWarning, match=r"lowest at the bound T = 0.01"):
        assert fit_temperature(wide, torch.zeros(50, dtype=torch.long)) == pytest.approx(0.01)
    # Logits of a diverged training (optimizer.lr=1e10 on digits), mostly wrong and larger than 100 times any
    # useful margin: softer is better up to the upper bound, a cause of its own (it said "every prediction right").
    wrong = torch.tensor([[1e6, 0.0]] * 45 + [[0.0, 1e6]] * 5)
    with pytest.warns(UserWarning, match=r"lowest at the bound T = 100 .*\(logits so large that even divided by 100"):
        assert fit_temperature(wrong, torch.ones(50, dtype=torch.long)) == pytest.approx(100.0)


def test_logits_equal_across_classes_fit_no_temperature() -> None:
    """A model that predicts the uniform distribution: softmax(z / T) is the same at every T, so no T is fitted
    (the search stopped at the lower bound and blamed "every held-out prediction right")."""
    logits = torch.randn(50, 1).expand(50, 4)
    with pytest.warns(UserWarning, match=r"same logit for every class .* the NLL does not depend on T, so T = 1$"):
        assert fit_temperature(logits, torch.randint(0, 4, (50,))) == 1.0

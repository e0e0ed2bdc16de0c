"""The run specification: validated when composed, carried by every checkpoint, enough to evaluate and predict."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from labelsmooth.cli.evaluate import evaluate
from labelsmooth.cli.schema import validate_run_config
from labelsmooth.data.preprocess import as_image_batch
from labelsmooth.errors import ConfigurationError
from labelsmooth.module import LabelSmoothingClassifier
from labelsmooth.runs.context import RunContext
from labelsmooth.specification import SPECIFICATION_KEY, MissingSpecificationError, RunSpecification
from tests.conftest import FAST, REPO_ROOT, compose_train_config, run_app_in_process, run_training, subprocess_env


@pytest.fixture(scope="module")
def copied_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A run's best checkpoint copied out of its run directory, which is then deleted; and the run's summary."""
    run_dir = tmp_path_factory.mktemp("run")
    summary = run_training(run_dir, ["seed=4"])
    copied = tmp_path_factory.mktemp("elsewhere") / "model.ckpt"
    shutil.copy(summary["checkpoint"], copied)
    shutil.rmtree(run_dir)
    return copied, summary


def test_every_checkpoint_carries_the_run_specification(copied_checkpoint: tuple[Path, dict]) -> None:
    checkpoint = torch.load(copied_checkpoint[0], map_location="cpu", weights_only=True)
    specification = RunSpecification.from_checkpoint(checkpoint)
    assert (specification.num_classes, specification.image_shape) == (10, (1, 8, 8))
    assert specification.smoothing["_target_"].endswith("UniformSmoothing")
    assert specification.model["_target_"] and specification.dataset["_target_"].endswith("DigitsDataModule")
    assert specification.preprocessing["normalize"] == "standardize"
    assert specification.preprocessing["mean"] is not None and specification.names["dataset"] == "digits"
    # every name its run's W&B config and metrics.json give, the strategy schedule included
    names = {"dataset": "digits", "model": "resnet_v1", "smoothing": "uniform", "augment": "none"}
    assert specification.names == {**names, "strategy_schedule": "none"}


def test_a_copied_checkpoint_evaluates_to_the_runs_test_accuracy(
    copied_checkpoint: tuple[Path, dict], tmp_path: Path
) -> None:
    ckpt, summary = copied_checkpoint
    cfg = compose_train_config(["logger=none", f"ckpt_path={ckpt}"], output_dir=tmp_path)
    evaluated = evaluate(_eval_config(ckpt, tmp_path), tmp_path)
    assert cfg is not None and evaluated["status"] == "completed"
    assert evaluated["test/acc"] == pytest.approx(summary["test/acc"], abs=1e-7)
    assert evaluated["dataset"] == "digits" and evaluated["smoothing"] == "uniform"
    assert evaluated["device"] == "cpu" and evaluated["code.labelsmooth"] == summary["code.labelsmooth"]


def test_a_checkpoint_of_a_model_started_from_a_weights_file_evaluates_and_loads_without_the_file(
    tmp_path: Path,
) -> None:
    """timm's ``model.pretrained=<file>`` chooses only where training starts: a checkpoint copied without the file
    still evaluates and loads (its own weights replace the file's)."""
    import timm

    weights = tmp_path / "start.pth"
    torch.save(timm.create_model("test_resnet", num_classes=1000, in_chans=1).state_dict(), weights)
    model = ["model=timm", "model.name=test_resnet", f"model.pretrained={weights}"]
    summary = run_training(tmp_path / "run", model)
    weights.unlink()
    ckpt = Path(summary["checkpoint"])
    evaluated = evaluate(_eval_config(ckpt, tmp_path / "eval"), tmp_path / "eval")
    assert evaluated["status"] == "completed", evaluated.get("error")
    assert evaluated["test/acc"] == pytest.approx(summary["test/acc"], abs=1e-7)
    assert LabelSmoothingClassifier.load_from_checkpoint(ckpt).specification.model["pretrained"] == str(weights)


def test_a_mixed_precision_checkpoint_evaluates_and_predicts_as_its_run_did(tmp_path: Path) -> None:
    """A ``bf16-mixed`` run's logits are its bfloat16 forward pass: its copied checkpoint evaluates and predicts in
    bfloat16 too. Selected by ``val/nll_ts``, each validation fits a temperature, the evaluation's too."""
    from labelsmooth.cli.build import build_datamodule
    from labelsmooth.runs.layout import RunDirectory

    precision = ["model=mlp", "trainer.precision=bf16-mixed", "callbacks.checkpoint.mode=min"]
    summary = run_training(tmp_path / "run", [*precision, "callbacks.checkpoint.monitor=val/nll_ts"])
    ckpt = tmp_path / "elsewhere" / "model.ckpt"
    ckpt.parent.mkdir()
    shutil.copy(summary["checkpoint"], ckpt)
    evaluated = evaluate(_eval_config(ckpt, tmp_path / "eval"), tmp_path / "eval")
    assert evaluated["status"] == "completed" and evaluated["precision"] == "bf16-mixed"
    compared = [k for k in summary if k.startswith(("val/", "test/")) and not k.startswith("val/acc_best")]
    assert "val/nll_ts" in compared and "test/ece_ts" in compared
    for key in [*compared, "temperature"]:
        assert evaluated[key] == pytest.approx(summary[key], abs=1e-6), key

    model = LabelSmoothingClassifier.load_from_checkpoint(ckpt)
    datamodule = build_datamodule(compose_train_config(FAST, output_dir=tmp_path).dataset)
    datamodule.setup("test")
    images = torch.stack([datamodule.test_set[i][0] for i in range(len(datamodule.test_set))])
    with np.load(RunDirectory(tmp_path / "run").predictions("test")) as saved:
        expected = torch.from_numpy(saved["logits"]).softmax(-1)
    assert torch.allclose(model.predict_proba(images), expected, atol=1e-6)

    # 16-mixed on a CPU computes in bfloat16 (Lightning's substitute): the evaluation records what it computed in
    half = _eval_config(ckpt, tmp_path / "eval16")
    half.trainer.precision = "16-mixed"
    context = RunContext(output_dir=tmp_path / "eval16", overrides=("trainer.precision=16-mixed",))
    assert evaluate(half, tmp_path / "eval16", context=context)["precision"] == "bf16-mixed"


def _eval_config(ckpt: Path, output_dir: Path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from labelsmooth.cli.build import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="eval", overrides=["logger=none", f"ckpt_path={ckpt}", "trainer.enable_progress_bar=false"]
        )
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
    return cfg


def test_a_copied_checkpoint_loads_and_predicts_in_a_plain_interpreter(
    copied_checkpoint: tuple[Path, dict], tmp_path: Path
) -> None:
    script = (
        "import numpy as np\n"
        "from sklearn.datasets import load_digits\n"
        "from labelsmooth import LabelSmoothingClassifier\n"
        f"m = LabelSmoothingClassifier.load_from_checkpoint({str(copied_checkpoint[0])!r}, map_location='cpu')\n"
        "digits = load_digits()\n"
        "images = np.rint(digits.images[:3] * 255 / 16).astype(np.uint8)\n"
        "print(m.predict(images).tolist())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=subprocess_env(), timeout=300
    )
    assert result.returncode == 0, result.stderr
    predicted = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(predicted) == 3 and all(0 <= k < 10 for k in predicted)


def test_predict_applies_the_runs_preprocessing_as_the_data_module_does(copied_checkpoint: tuple[Path, dict]) -> None:
    from labelsmooth.data.preprocess import BatchPreprocessor

    model = LabelSmoothingClassifier.load_from_checkpoint(copied_checkpoint[0])
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    expected = BatchPreprocessor.from_record(model.specification.preprocessing)(images, train=False)
    with torch.no_grad():
        logits = model(expected)
    assert torch.equal(model.predict(images), logits.argmax(-1))
    assert torch.allclose(model.predict_proba(images.squeeze(1).numpy()), logits.softmax(-1))


def test_predict_reads_float_pixels_in_0_1_as_uint8_over_255_and_refuses_other_ranges(
    copied_checkpoint: tuple[Path, dict],
) -> None:
    model = LabelSmoothingClassifier.load_from_checkpoint(copied_checkpoint[0])
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    expected = model.predict_proba(images)
    assert torch.allclose(model.predict_proba(images.double() / 255), expected, atol=1e-5)
    assert torch.allclose(model.predict_proba(images.float().numpy() / 255), expected, atol=1e-5)
    assert torch.equal(model.predict_proba(images.long()), expected)
    for unsigned in (np.uint16, np.uint32):  # torch has no min or max of these
        assert torch.equal(model.predict_proba(images.numpy().astype(unsigned)), expected)
    digits = torch.arange(17.0).repeat(4)[:64].reshape(1, 8, 8)  # scikit-learn's digits: 0..16
    with pytest.raises(ValueError, match=r"these floats lie in \[0, 16\]: scale them"):
        model.predict(digits)
    with pytest.raises(ValueError, match=r"these integers lie in \[-1, 300\]"):
        model.predict(torch.tensor([-1, 300]).repeat(32).reshape(8, 8))
    nan = images.double() / 255
    nan[0, 0, 0, 0] = float("nan")  # predicted as NaN probabilities, and for every image with an all-NaN input
    with pytest.raises(ValueError, match=r"^predict takes finite pixels; 1 of these are NaN or inf$"):
        model.predict(nan)
    with pytest.raises(ValueError, match="not booleans"):  # read as integers: True was the pixel value 1 of 255
        model.predict(images > 127)


def test_predict_takes_pil_images_and_image_files_decoded_as_the_image_folders_are(
    copied_checkpoint: tuple[Path, dict], tmp_path: Path
) -> None:
    from PIL import Image

    from labelsmooth.data.in_memory import decode_transform

    model = LabelSmoothingClassifier.load_from_checkpoint(copied_checkpoint[0])  # digits: 1 x 8 x 8
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (16, 20, 4), dtype=np.uint8), mode="RGBA")  # another size and mode
    grey = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8))
    grey.save(tmp_path / "grey.png")
    expected = torch.stack([decode_transform(8, 1)(image) for image in (rgba, grey)])
    assert torch.equal(model.predict([rgba, tmp_path / "grey.png"]), model.predict(expected))
    assert torch.equal(model.predict(grey), model.predict(expected[1:]))
    deep = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)  # 16-bit grey levels, as opened from a file
    assert deep.mode == "I;16" and torch.equal(model.predict(deep), model.predict(grey))
    eight_bit_levels = Image.fromarray(np.asarray(grey, dtype=np.int32))  # mode I too: read as 16-bit, with a warning
    with pytest.warns(UserWarning, match=r"a 32-bit integer image \(mode I\) whose levels are all <= 255"):
        model.predict(eight_bit_levels)


def test_image_batches_come_in_every_common_layout() -> None:
    nchw = torch.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    assert torch.equal(as_image_batch(nchw.permute(0, 2, 3, 1), (3, 4, 4)), nchw)
    assert torch.equal(as_image_batch(nchw[0], (3, 4, 4)), nchw[:1])
    gray = torch.zeros(5, 8, 8, dtype=torch.uint8)
    assert as_image_batch(gray, (1, 8, 8)).shape == (5, 1, 8, 8)
    assert as_image_batch(np.zeros((8, 8)), (1, 8, 8)).shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"do not fit the model's inputs \(1, 8, 8\)"):
        as_image_batch(torch.zeros(2, 7, 7), (1, 8, 8))


def test_a_checkpoint_without_its_specification_says_how_to_evaluate_it() -> None:
    with pytest.raises(MissingSpecificationError, match=r"lacks its run specification.*<run>/checkpoints/old\.ckpt"):
        RunSpecification.from_checkpoint({"state_dict": {}}, "/somewhere/old.ckpt")


def test_an_old_checkpoint_in_its_run_is_evaluated_with_the_bins_its_config_kept(trained_run, tmp_path: Path) -> None:
    """Configs from before the top-level ``n_bins`` kept the bins in the calibration callback."""
    import yaml

    from labelsmooth.cli.saved import SavedRun

    run = tmp_path / "run"
    shutil.copytree(trained_run.directory, run, symlinks=True)
    ckpt = run / "checkpoints" / Path(trained_run.summary["checkpoint"]).name
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    del checkpoint[SPECIFICATION_KEY]
    torch.save(checkpoint, ckpt)
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    del config["n_bins"]
    config["callbacks"]["calibration"]["n_bins"] = 10
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert SavedRun.of_checkpoint(ckpt).config.n_bins == 10
    assert SavedRun.of_checkpoint(ckpt, n_bins=7).config.n_bins == 7


def test_an_old_checkpoint_away_from_its_run_gets_one_line(
    copied_checkpoint: tuple[Path, dict], tmp_path: Path
) -> None:
    checkpoint = torch.load(copied_checkpoint[0], map_location="cpu", weights_only=True)
    del checkpoint[SPECIFICATION_KEY]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    result = run_app_in_process(
        [f"ckpt_path={tmp_path / 'old.ckpt'}", "logger=none"],
        tmp_path,
        script="eval.py",
        env={"HYDRA_FULL_ERROR": "", "LABELSMOOTH_ROOT": str(tmp_path)},
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "lacks its run specification" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["seed=abc"], r"^seed=abc must be an integer in \[0, 4294967295\]"),
        (["seed=-5"], r"^seed=-5 must be an integer in"),
        (["seed=99999999999"], r"^seed=99999999999 must be"),
        (["trainer.max_epochs=0"], r"^trainer.max_epochs=0 must be an integer >= 1"),
        (["trainer.max_epochs=-1"], r"^trainer.max_epochs=-1 must be an integer >= 1"),
        (["scheduler=multistep", "scheduler.milestones=[abc]"], r"^scheduler.milestones=\['abc'\] .* list of integers"),
        (["trainer.precision=bf16-true"], r"^trainer.precision=bf16-true is not supported.*bf16-mixed"),
        (["trainer.precision=64"], r"^trainer.precision=64 is not supported: .* Use 32-true, 16-mixed or bf16-mixed$"),
        (["smoothing=gamma", "smoothing.gamma=high"], r"^smoothing.gamma=high must be a number"),
        (["model.depth=deep"], r"^model.depth=deep must be an integer"),
        (["+model.width=3"], r"^model.width=3 is not a setting: ResNetV1 takes no parameter 'width'"),
        (["n_bins=0"], r"^n_bins=0 must be an integer in \[1, 10000\]"),
    ],
)
def test_bad_values_are_refused_when_composed_in_one_line(overrides: list[str], message: str, tmp_path: Path) -> None:
    cfg = compose_train_config([*FAST, *overrides], output_dir=tmp_path)
    with pytest.raises(ConfigurationError, match=message) as refused:
        validate_run_config(cfg)
    assert "\n" not in str(refused.value)


def test_a_step_or_time_bound_allows_max_epochs_minus_one(tmp_path: Path) -> None:
    """But not with the cosine schedule's period following it: T_max=-1 made the learning rate alternate between 0
    and its base value from one epoch to the next."""
    steps = [*FAST, "trainer.max_epochs=-1", "+trainer.max_steps=5"]
    with pytest.raises(ConfigurationError, match=r"^scheduler.T_max=-1 must be an integer >= 1 \(the cosine period"):
        validate_run_config(compose_train_config([*steps, "scheduler=cosine"], output_dir=tmp_path))
    validate_run_config(compose_train_config([*steps, "scheduler=cosine", "scheduler.T_max=3"], output_dir=tmp_path))
    validate_run_config(compose_train_config([*steps, "scheduler=none"], output_dir=tmp_path))
    validate_run_config(
        compose_train_config(
            [*FAST, "trainer.max_epochs=-1", "+trainer.max_time=00:00:01:00", "scheduler=none"], tmp_path
        )
    )


@pytest.mark.parametrize(
    "override",
    [
        "seed=abc",
        "seed=-5",
        "trainer.max_epochs=0",
        "trainer.max_epochs=-1",
        "scheduler=multistep scheduler.milestones=[abc]",
        "+sed=3",
        "seed=${nonexistent}",  # an interpolation that cannot be resolved
        "tags=[a,${oc.env:LABELSMOOTH_NOT_SET}]",
        "paths.log_dir=${oc.env:LABELSMOOTH_NOT_SET}",  # Hydra would resolve it making the run's directory
        "trainer=cpu trainer.precision=16-mixed",  # Lightning would train in bf16-mixed, recorded as 16-mixed
    ],
)
def test_train_py_stops_bad_values_at_once(override: str, tmp_path: Path) -> None:
    result = run_app_in_process(
        [*override.split(), "logger=none", f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
        env={"HYDRA_FULL_ERROR": "", "LABELSMOOTH_ROOT": str(tmp_path)},
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ConfigurationError" in lines[0], result.stderr


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_a_top_level_key_added_with_plus_is_refused_with_the_closest_setting(script: str, tmp_path: Path) -> None:
    """``+sed=3`` adds a key that no config has, so nothing would read it and the run would use the default seed."""
    result = run_app_in_process(
        ["+sed=3", "logger=none", f"ckpt_path={tmp_path / 'none.ckpt'}", f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
        script=script,
        env={"HYDRA_FULL_ERROR": "", "LABELSMOOTH_ROOT": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "ConfigurationError: +sed=3 is not a setting: nothing reads a top-level key 'sed' (did you mean seed? " in (
        result.stderr
    )
    assert "ckpt_path, " in result.stderr and "hydra" not in result.stderr.split("settings are ")[1].split(")")[0]


def test_the_parts_meet_the_contracts_the_callbacks_read(tmp_path: Path) -> None:
    """The callbacks and the apps read the module, the data module and the network through their protocols
    (``labelsmooth.callbacks.contracts``, ``HasOptimizerGroups``, ``RunRecorder``): an attribute renamed on the
    real parts would make a callback skip its figure or its ``metrics.json`` entries without a word, so the real
    parts are checked against them here."""
    from labelsmooth.callbacks.contracts import PreprocessesBatches, SplitData, TestedClassifier
    from labelsmooth.cli.build import build_datamodule, build_module, instantiate_callbacks
    from labelsmooth.models.l2_penalty import HasOptimizerGroups
    from labelsmooth.runs.record import RunRecorder

    cfg = compose_train_config([*FAST, "figures=true", "precise_bn=2"], output_dir=tmp_path)
    datamodule = build_datamodule(cfg.dataset)
    module = build_module(cfg, datamodule)
    assert isinstance(module, TestedClassifier) and isinstance(module, RunRecorder)
    assert isinstance(datamodule, SplitData) and isinstance(datamodule, PreprocessesBatches)
    assert isinstance(module.net, HasOptimizerGroups)
    callbacks = instantiate_callbacks(cfg.callbacks, progress_bar=False, has_logger=False)
    recorders = {type(callback).__name__ for callback in callbacks if isinstance(callback, RunRecorder)}
    assert recorders == {"PreciseBatchNorm", "CalibrationCallback", "PenultimateProjection"}


def test_no_contract_probes_in_the_sources() -> None:
    """The strategy, the module, the data module, the network and the callbacks are read through types
    (the protocols of ``labelsmooth.callbacks.contracts``, the strategy classes), not probed attribute by attribute."""
    probed = r"(criterion|strategy|self\.criterion|pl_module|datamodule|trainer\.[a-z_]+|self\.net|self|part|"
    probed += r"checkpoint)"
    found = subprocess.run(
        ["git", "grep", "-nE", rf"getattr\({probed}, \"", "src/"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 1 and not found.stdout, found.stdout


def test_below_cli_nothing_reads_a_dict_config() -> None:
    """The entry points (``cli/``, and the report's own app) turn the composed config into plain objects; no other
    module imports OmegaConf."""
    from tests.test_package import PACKAGE, imported_modules

    readers = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in ("cli", "report")
        and any(module.split(".")[0] == "omegaconf" for module in imported_modules(path))
    ]
    assert readers == []

"""``python eval.py`` on bad input: one short message and exit code 1 (as ``train.py``), W&B online without a login
falls back to offline, and a W&B run that eval started is finished with the run's exit code."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TrainedRun, run_app_in_process

QUIET = ["trainer.enable_progress_bar=false"]


def run_eval(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python eval.py <args>`` as a user runs it (in this process): no HYDRA_FULL_ERROR, W&B offline unless
    ``env`` says otherwise (``WANDB_MODE=""`` drops it), outputs under ``cwd``."""
    return run_app_in_process(args, cwd, {"LABELSMOOTH_ROOT": str(cwd), "HYDRA_FULL_ERROR": "", **env}, "eval.py")


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The lines of stderr: a user's error is one line, without Hydra's frame ("Error executing job with
    overrides", its traceback hint)."""
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.fixture
def checkpoint(trained_run: TrainedRun) -> Path:
    return Path(trained_run.summary["checkpoint"])


def test_eval_py_without_ckpt_path_says_it_is_required(tmp_path: Path) -> None:
    result = run_eval([f"hydra.run.dir={tmp_path / 'eval'}"], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "MissingMandatoryValue" not in result.stderr, result.stderr
    assert error_lines(result) == [
        "EvaluationError: ckpt_path= is required: the checkpoint to evaluate, e.g. "
        "python eval.py ckpt_path=outputs/runs/<date>/<time>/checkpoints/best-epoch012.ckpt"
    ], result.stderr
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("finished", [True, False], ids=["completed", "unfinished"])
def test_eval_py_into_a_training_runs_directory_leaves_every_file_of_the_run(
    tmp_path: Path, checkpoint: Path, finished: bool
) -> None:
    """It replaced the run's completed ``metrics.json`` (and its ``.hydra/`` files) with the evaluation's; and an
    unfinished run's (killed before it wrote ``metrics.json``) predictions, figures and ``.hydra/`` files."""
    import shutil

    from labelsmooth.runs.result_guard import keep_hydra_files

    run = tmp_path / "run"
    shutil.copytree(checkpoint.parents[1], run, symlinks=True)
    keep_hydra_files(run)  # as a run that completes under Hydra keeps them (the fixture's run was composed)
    if not finished:
        (run / "metrics.json").unlink()
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    result = run_eval([f"ckpt_path={run / 'checkpoints' / checkpoint.name}", f"hydra.run.dir={run}", *QUIET], tmp_path)
    assert result.returncode == 1, result.stderr
    assert error_lines(result) == [
        f"ResultKept: {run} holds a training run, whose metrics.json an evaluation would replace; it is left as it "
        "is: give eval.py another hydra.run.dir (by default each evaluation gets its own under paths.log_dir/eval/)"
    ]
    assert {path: path.read_bytes() for path in before} == before


def test_eval_py_into_a_completed_evaluations_directory_leaves_it(tmp_path: Path, checkpoint: Path) -> None:
    """A second evaluation pointed at the first one's directory replaced its completed ``metrics.json``; a failed
    evaluation's is replaced (nothing was earned there)."""
    evaluation = tmp_path / "eval"
    args = [f"ckpt_path={checkpoint}", f"hydra.run.dir={evaluation}", "figures=false", *QUIET]
    assert run_eval(args, tmp_path).returncode == 0
    before = (evaluation / "metrics.json").read_bytes()
    result = run_eval(args, tmp_path)
    assert result.returncode == 1, result.stderr
    assert error_lines(result) == [
        f"ResultKept: {evaluation} holds a completed evaluation, whose metrics.json an evaluation would replace; it "
        "is left as it is: give eval.py another hydra.run.dir (by default each evaluation gets its own under "
        "paths.log_dir/eval/)"
    ]
    assert (evaluation / "metrics.json").read_bytes() == before
    failed = tmp_path / "failed"
    assert run_eval([f"hydra.run.dir={failed}"], tmp_path).returncode == 1  # no ckpt_path: a failed evaluation
    assert run_eval([*args[:1], f"hydra.run.dir={failed}", *args[2:]], tmp_path).returncode == 0
    assert json.loads((failed / "metrics.json").read_text())["status"] == "completed"


def test_eval_py_given_a_data_set_key_without_a_data_set_says_to_choose_one(tmp_path: Path) -> None:
    """``dataset`` is a group ``eval.py`` leaves empty (the run's own): "nothing reads a top-level key 'dataset'"."""
    args = ["ckpt_path=x.ckpt", "+dataset.normalize=none", f"hydra.run.dir={tmp_path / 'eval'}", *QUIET]
    result = run_eval(args, cwd=tmp_path)
    assert result.returncode == 1
    assert error_lines(result) == [
        "ConfigurationError: +dataset.normalize=none: choose a dataset first (dataset=<option>), then set its keys"
    ]


def test_eval_py_on_a_missing_checkpoint_says_where_checkpoints_are(tmp_path: Path) -> None:
    earlier = tmp_path / "outputs" / "runs" / "2025-01-02" / "03-04-05" / "checkpoints" / "best-epoch007.ckpt"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"")
    result = run_eval(["ckpt_path=/nonexistent/x.ckpt", f"hydra.run.dir={tmp_path / 'eval'}"], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert error_lines(result) == [
        "EvaluationError: ckpt_path=/nonexistent/x.ckpt: no such checkpoint file. Checkpoints are under "
        "outputs/runs/<date>/<time>/checkpoints/ (sweeps: outputs/multirun/<date>/<time>/<job>/checkpoints/). "
        "The newest: ckpt_path=outputs/runs/2025-01-02/03-04-05/checkpoints/best-epoch007.ckpt"
    ], result.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error_type"] == "EvaluationError"

    # A run directory instead of its checkpoint: the checkpoint inside it is named.
    result = run_eval([f"ckpt_path={earlier.parents[1].relative_to(tmp_path)}"], cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_lines(result) == [
        "EvaluationError: ckpt_path=outputs/runs/2025-01-02/03-04-05 is a directory: give a .ckpt file, "
        "e.g. ckpt_path=outputs/runs/2025-01-02/03-04-05/checkpoints/best-epoch007.ckpt"
    ], result.stderr

    # HYDRA_FULL_ERROR=1 still gives the whole traceback.
    result = run_eval(["ckpt_path=/nonexistent/x.ckpt"], cwd=tmp_path, HYDRA_FULL_ERROR="1")
    assert result.returncode == 1 and "Traceback" in result.stderr, result.stderr


def test_a_link_copied_without_its_checkpoint_is_named_as_a_link(tmp_path: Path) -> None:
    """``last.ckpt`` links to the best checkpoint when they coincide; ``cp -a`` copies the link alone."""
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "last.ckpt").symlink_to("best-epoch001.ckpt")
    result = run_eval([f"ckpt_path={tmp_path / 'copy' / 'last.ckpt'}", f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    assert result.returncode == 1 and error_lines(result) == [
        f"EvaluationError: ckpt_path={tmp_path / 'copy' / 'last.ckpt'} is a link to best-epoch001.ckpt, which is not "
        "there (a link copied without its file): copy the file itself (cp -L, rsync -L) or give ckpt_path= the file "
        "it links to"
    ], result.stderr


def test_a_checkpoint_belongs_to_the_run_directory_around_it_only_when_that_run_is_the_one_it_describes(
    trained_run: TrainedRun, tmp_path: Path
) -> None:
    import shutil

    from labelsmooth.cli.evaluate import evaluated_run
    from labelsmooth.runs.files import checkpoint_run_directory
    from labelsmooth.tracking.wandb_run import single_run_group

    best = Path(trained_run.summary["checkpoint"])
    names = {key: trained_run.summary[key] for key in ("dataset", "model", "smoothing")}
    assert checkpoint_run_directory(best, names, trained_run.summary["seed"]) == trained_run.directory.resolve()
    assert evaluated_run(best)["run_dir"] == str(trained_run.directory.resolve())

    elsewhere = tmp_path / "elsewhere" / "model.ckpt"  # copied alone: its grandparent is no run
    elsewhere.parent.mkdir()
    shutil.copy(best, elsewhere)
    assert checkpoint_run_directory(elsewhere, names) is None and evaluated_run(elsewhere)["run_dir"] is None

    other = tmp_path / "other_run"  # copied into another run's checkpoints/: a run of another strategy
    (other / "checkpoints").mkdir(parents=True)
    (other / "metrics.json").write_text(json.dumps({**names, "smoothing": "none", "wandb.id": "x", "wandb.group": "g"}))
    shutil.copy(best, other / "checkpoints" / "from_run1.ckpt")
    evaluated = evaluated_run(other / "checkpoints" / "from_run1.ckpt")
    assert evaluated["run_dir"] is None and "wandb_id" not in evaluated
    assert evaluated["wandb_group"] == single_run_group(names["dataset"], names["model"])
    (other / "metrics.json").write_text(json.dumps({**names, "seed": trained_run.summary["seed"]}))
    assert evaluated_run(other / "checkpoints" / "from_run1.ckpt")["run_dir"] == str(other.resolve())


def test_eval_py_asking_for_devices_this_machine_lacks_is_one_line(tmp_path: Path, checkpoint: Path) -> None:
    """The check training makes (``labelsmooth.cli.checks.check_devices``); it was Lightning's "No supported gpu
    backend found!" after the checkpoint and the data were read."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_eval([f"ckpt_path={checkpoint}", "trainer.accelerator=gpu", "logger=none"], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert error_lines(result) == [
        "ConfigurationError: trainer.accelerator=gpu asks for 1 GPU but this machine has none (torch sees no CUDA "
        "device). Use trainer=cpu, or trainer=default to take a GPU when there is one."
    ], result.stderr


@pytest.mark.parametrize("key", ["n_bins", "figures", "save_predictions", "predictions_max_values"])
def test_eval_py_refuses_a_setting_it_reads_removed(tmp_path: Path, checkpoint: Path, key: str) -> None:
    """``~n_bins`` (and the others eval.py reads) failed in a traceback (``ConfigAttributeError: Key 'n_bins' is
    not in struct``) after the checkpoint was read."""
    result = run_eval([f"ckpt_path={checkpoint}", f"~{key}", "logger=none"], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert error_lines(result) == [
        f"ConfigurationError: ~{key}: a run needs {key}; give it a value instead of removing it"
    ], result.stderr


def test_eval_py_takes_num_threads_as_training_does(tmp_path: Path, checkpoint: Path) -> None:
    """CPU results depend on torch's thread count: eval.py sets and records it as train.py does (it refused the key)."""
    import torch

    before = torch.get_num_threads()
    try:
        result = run_eval([f"ckpt_path={checkpoint}", "num_threads=1", "logger=none", "figures=false",
                           f"hydra.run.dir={tmp_path / 'one'}"], cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert json.loads((tmp_path / "one" / "metrics.json").read_text())["num_threads"] == 1
    finally:
        torch.set_num_threads(before)
    result = run_eval([f"ckpt_path={checkpoint}", "num_threads=0", "logger=none"], cwd=tmp_path)
    assert result.returncode == 1 and error_lines(result) == [
        f"ConfigurationError: num_threads=0 must be an integer in [1, {os.cpu_count()}] (this machine's "
        f"{os.cpu_count()} cores; null: torch's default)"
    ], result.stderr


def wandb_exit_codes(eval_dir: Path) -> list[str]:
    """The exit codes W&B recorded for the runs under ``eval_dir`` (its debug log of each run)."""
    logs = sorted(eval_dir.glob("wandb/offline-run-*/logs/debug.log"))
    assert logs, f"no W&B run under {eval_dir}"
    return [
        line.rsplit(":", 1)[1].strip()
        for log in logs
        for line in log.read_text().splitlines()
        if "got exitcode" in line
    ]


def test_eval_py_with_wandb_online_but_no_login_logs_offline(tmp_path: Path, checkpoint: Path) -> None:
    home = tmp_path / "home"  # no ~/.netrc, no W&B settings
    home.mkdir()
    result = run_eval(
        [
            f"ckpt_path={checkpoint}",
            "logger=wandb",
            "logger.offline=false",
            f"hydra.run.dir={tmp_path / 'eval'}",
            *QUIET,
        ],
        cwd=tmp_path,
        HOME=str(home),
        WANDB_MODE="",
        WANDB_API_KEY="",
        WANDB_BASE_URL="http://127.0.0.1:9",  # nothing listens there: no network either way
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "UsageError" not in output and "Traceback" not in output, output[-3000:]
    assert output.count("W&B online mode is not possible (no W&B API key") == 1, output[-3000:]
    assert "logging offline instead" in output
    assert "W&B offline run saved; upload it with: wandb sync" in output
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["status"] == "completed"
    assert wandb_exit_codes(tmp_path / "eval") == ["0"]


def test_failing_eval_py_exits_1_and_finishes_its_wandb_run_as_failed(tmp_path: Path, checkpoint: Path) -> None:
    # n_bins=0 is refused by the calibration callback, built after the W&B run has started.
    result = run_eval(
        [f"ckpt_path={checkpoint}", "logger=wandb", "n_bins=0", f"hydra.run.dir={tmp_path / 'eval'}", *QUIET],
        cwd=tmp_path,
        HOME=str(tmp_path),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert error_lines(result)[-1] == (
        "ConfigurationError: n_bins=0 must be an integer in [1, 10000] (the bins of the calibration errors)"
    ), result.stderr
    assert "W&B offline run saved; upload it with: wandb sync" in output
    assert wandb_exit_codes(tmp_path / "eval") == ["1"]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error_type"] == "ConfigurationError"


def test_eval_py_on_data_with_other_classes_is_refused(tmp_path: Path) -> None:
    """An image folder with as many classes but other names would be scored by label position."""
    from tests.conftest import FAST, run_training
    from tests.datasets_on_disk import write_image_folder

    trained = write_image_folder(tmp_path / "pets")
    other = write_image_folder(tmp_path / "birds", classes=("crows", "gulls", "terns"))
    folder = ["dataset=image_folder", "dataset.image_size=8", "dataset.num_workers=0", "dataset.val_size=0.25"]
    folder += ["dataset.test_size=0.25", "model=mlp"]
    summary = run_training(tmp_path / "run", [*FAST, *folder, f"dataset.train_dir={trained['train_dir']}"])
    args = [f"ckpt_path={summary['checkpoint']}", *folder[:5], f"dataset.train_dir={other['train_dir']}", *QUIET]
    result = run_eval([*args, f"hydra.run.dir={tmp_path / 'eval'}"], cwd=tmp_path)
    assert result.returncode == 1 and error_lines(result) == [
        "EvaluationError: the checkpoint was trained on the classes cats, dogs, owls, the evaluated data has crows, "
        "gulls, terns: its labels would be matched by position. Evaluate on data with the training classes, in "
        "their order."
    ], result.stderr


def test_eval_py_over_several_checkpoints_evaluates_each_whatever_the_others_do(tmp_path: Path) -> None:
    result = run_eval(["-m", "ckpt_path=a.ckpt,b.ckpt", f"hydra.sweep.dir={tmp_path / 'sweep'}", *QUIET], tmp_path)
    assert result.returncode == 1  # as under train.py -m: a sweep with a failed job
    assert "#1 : ckpt_path=b.ckpt" in result.stdout + result.stderr  # the second ran after the first failed
    assert [json.loads((tmp_path / "sweep" / n / "metrics.json").read_text())["status"] for n in "01"] == ["failed"] * 2


def test_eval_py_on_an_image_folder_takes_the_models_image_size_and_checks_its_class_names(
    tmp_path: Path, checkpoint: Path
) -> None:
    """The shared digits run (8×8 grey, classes 0-9) on folders of 40-pixel images. Digits recorded no class names,
    so folders named zero…nine (sorted: eight, five, four, …) were scored by position; the folder's default size
    (32) was taken, and the network, which pools globally, scored the upscaled images (0.10 against 0.94)."""
    from tests.datasets_on_disk import write_image_folder

    words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    named = write_image_folder(tmp_path / "named", classes=words)
    numbered = write_image_folder(tmp_path / "numbered", classes=tuple(str(d) for d in range(10)))
    folder = [f"ckpt_path={checkpoint}", "dataset=image_folder", "dataset.channels=1", "dataset.num_workers=0"]
    folder += ["dataset.val_size=0.25", "dataset.test_size=0.25", *QUIET]

    result = run_eval([*folder, f"dataset.train_dir={named['train_dir']}", f"hydra.run.dir={tmp_path / 'a'}"], tmp_path)
    assert result.returncode == 1 and error_lines(result) == [
        "EvaluationError: the checkpoint was trained on the classes 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, the evaluated data "
        "has eight, five, four, nine, one, seven, six, three, two, zero: its labels would be matched by position. "
        "Evaluate on data with the training classes, in their order."
    ], result.stderr

    numbered_folder = [*folder, f"dataset.train_dir={numbered['train_dir']}"]
    result = run_eval([*numbered_folder, "dataset.image_size=16", f"hydra.run.dir={tmp_path / 'b'}"], tmp_path)
    assert result.returncode == 1 and error_lines(result) == [
        "EvaluationError: the evaluated data set's images are 1×16×16 (channels×height×width), the model was trained "
        "on 1×8×8 (digits): evaluate it on images of that shape (dataset.image_size=8 where the data set resizes its "
        "images)"
    ], result.stderr

    result = run_eval([*numbered_folder, f"hydra.run.dir={tmp_path / 'c'}"], tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert (metrics["status"], metrics["dataset"], metrics["trained_on"]) == ("completed", "image_folder", "digits")

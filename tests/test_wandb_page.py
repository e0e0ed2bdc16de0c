"""The W&B run page a researcher opens, checked from W&B's own offline records (``tests/wandb_records.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from labelsmooth.tracking.wandb_run import best_value_summaries
from tests.conftest import REPO_ROOT, run_app_in_process, run_training, subprocess_env
from tests.wandb_records import offline_run_of

EPOCHS = ["trainer.max_epochs=3"]  # of debug=fast's few batches


def numeric(metrics: dict) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def test_a_completed_run_page_holds_what_metrics_json_holds(tmp_path: Path) -> None:
    overrides = ["logger=wandb", "tags=[study-1]", "logger.log_model=best", "smoothing=gamma", "figures=true", *EPOCHS]
    summary = run_training(tmp_path, overrides)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    page = offline_run_of(tmp_path)

    assert page.exit_code == 0
    assert page.group == "digits-resnet_v1" == metrics["wandb.group"]  # a single run: its data set and model
    assert page.job_type == "train" and page.tags == ["study-1", "gamma"]
    choices = page.config["choices"]
    assert (choices["dataset"], choices["model"], choices["smoothing"]) == ("digits", "resnet_v1", "gamma")
    assert page.config["smoothing"]["gamma"] == summary["smoothing.gamma"]
    # One value per epoch of the training curve, each at its epoch (the learning rates too: they were logged without
    # one, and W&B filed each under the epoch before).
    for key in ("train/loss", "val/acc", "val/nll", "val/ece", "lr-Adam/pg1"):
        epochs = [row.get("epoch") for row in page.history if key in row and "trainer/global_step" in row]
        assert epochs[:3] == [0, 1, 2], (key, epochs)
    # Every number of metrics.json is in the summary; the ranking metrics as their best value.
    summaries = best_value_summaries()
    for key, value in numeric(metrics).items():
        assert key in page.summary, key
        if key in summaries:
            best = (max if summaries[key] == "max" else min)(page.history_of(key))
            assert page.summary[key] == {summaries[key]: pytest.approx(best)}, key
        else:
            assert page.summary[key] == pytest.approx(value), key
    assert summary["val/acc_best"] == pytest.approx(page.summary["val/acc_best"]["max"])
    # The metric definitions: epoch-level metrics against the epoch, the best values as summaries.
    for pattern in ("train/*", "val/*", "lr-*"):
        assert page.metrics[pattern].step_metric == "epoch"
    assert page.metrics["val/acc"].summary.max and page.metrics["val/acc_best"].summary.max
    assert page.metrics["val/nll"].summary.min and page.metrics["val/ece"].summary.min
    assert page.metrics["*"].step_metric == "trainer/global_step"  # the step-level rest
    # The media: reliability diagrams and their bin tables, the confusion matrix, the penultimate picture.
    media = [path for path in page.files if path.startswith("media/")]
    for name in ("images/val/reliability_diagram", "images/test/reliability_diagram", "table/test/reliability_bins",
                 "images/test/confusion_matrix", "images/penultimate_projection"):  # fmt: skip
        assert any(path.startswith(f"media/{name}") for path in media), name
    # logger.log_model=best: the evaluated checkpoint, as the model artifact.
    (model,) = [artifact for artifact in page.artifacts if artifact.type == "model"]
    assert model.name == f"model-{metrics['wandb.id']}" and "best" in model.aliases
    (entry,) = model.manifest.contents
    assert entry.path == "model.ckpt" and entry.size == Path(metrics["checkpoint"]).stat().st_size


def test_a_failed_run_page_exits_1_with_the_error(tmp_path: Path) -> None:
    overrides = ["logger=wandb", "model=mlp", "optimizer=sgd", "optimizer.lr=1e30"]
    with pytest.raises(Exception, match="learning rate"):
        run_training(tmp_path, [*overrides, "callbacks.nan_guard.check_every_n_steps=1"])
    page = offline_run_of(tmp_path)
    assert page.exit_code == 1
    assert page.summary["status"] == "failed" and page.summary["error_type"] == "NonFiniteLossError"
    assert page.group == "digits-mlp"


def test_a_sweep_job_that_fails_before_training_has_a_failed_run_in_the_sweep_group(tmp_path: Path) -> None:
    sweep = tmp_path / "day" / "time"
    grid = ["-m", "smoothing=gamma", "smoothing.gamma=0.05,0.8", "debug=fast", "logger=wandb"]
    result = run_app_in_process([*grid, f"hydra.sweep.dir={sweep}", "trainer.enable_progress_bar=false"], tmp_path)
    assert result.returncode == 1
    failed, completed = offline_run_of(sweep / "0"), offline_run_of(sweep / "1")
    assert failed.exit_code == 1 and completed.exit_code == 0
    assert failed.group == completed.group == "sweep-day-time"
    assert failed.summary["error_type"] == "ConfigurationError" and "1/K=0.1" in failed.summary["error"]
    assert "val/acc" in completed.summary and "val/acc" not in failed.summary


def test_an_evaluation_joins_the_group_of_the_run_it_evaluates(tmp_path: Path) -> None:
    trained = tmp_path / "trained"
    run_training(trained, ["logger=wandb"])
    metrics = json.loads((trained / "metrics.json").read_text())
    evaluation = [f"ckpt_path={metrics['checkpoint']}", "logger=wandb", f"paths.log_dir={tmp_path / 'eval'}"]
    evaluation.append("trainer.precision=bf16-mixed")  # trained in 32
    result = run_app_in_process([*evaluation, "trainer.enable_progress_bar=false"], tmp_path, script="eval.py")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "eval").rglob("offline-run-*")
    page = offline_run_of(run_dir.parent.parent)
    assert page.exit_code == 0 and page.job_type == "eval"
    assert page.group == metrics["wandb.group"] == "digits-resnet_v1"
    assert page.config["evaluated_run"]["wandb_id"] == metrics["wandb.id"]
    assert page.config["evaluated_run"]["checkpoint"] == metrics["checkpoint"]
    assert "uniform" in page.tags  # its strategy, read from the checkpoint, as its run is tagged
    assert page.config["trainer"]["precision"] == "bf16-mixed"  # what it was evaluated with, not the training's 32
    (evaluated,) = (tmp_path / "eval").rglob("metrics.json")
    worst = json.loads(evaluated.read_text())["test/acc_worst_class"]
    assert page.summary["test/acc_worst_class"] == worst  # exact, as metrics.json (the logged value is float32)


def test_the_best_values_of_a_resumed_run_cover_the_epochs_before_its_resume(tmp_path: Path) -> None:
    """A resumed run's process logs the epochs after its checkpoint: W&B's best-value summaries covered those
    alone; the run's history.csv has every epoch, and the run table shows the best of them."""
    from pytorch_lightning.loggers import WandbLogger

    from labelsmooth.cli.tracking import log_records_to_wandb
    from labelsmooth.tracking.wandb_run import define_metrics

    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="labelsmooth")
    define_metrics(logger.experiment)
    logger.experiment.log({"val/acc": 0.5, "val/nll": 0.9, "epoch": 2})  # the epoch after the resume
    history = [{"epoch": 0, "val/acc": 0.25, "val/nll": 1.5}, {"epoch": 1, "val/acc": 0.75, "val/nll": 0.5}]
    log_records_to_wandb(logger, {"epochs": 3}, [*history, {"epoch": 2, "val/acc": 0.5, "val/nll": 0.9}])
    logger.experiment.finish()
    page = offline_run_of(tmp_path)
    assert page.summary["val/acc"] == {"max": 0.75} and page.summary["val/nll"] == {"min": 0.5}
    assert page.summary["epochs"] == 3


def agent_command(sweep: dict, values: dict) -> list[str]:
    """The command ``wandb agent`` runs for a sample of ``sweep`` (``wandb.wandb_agent.Agent._command_run``): the
    sweep's ``command`` with its macros replaced by W&B's own helpers, the interpreter being this one."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    variables = create_sweep_command_args({"args": {name: {"value": value} for name, value in values.items()}})
    variables.update(interpreter=[sys.executable], program=[sweep["program"]], env=["/usr/bin/env"])
    command = []
    for part in map(str, create_sweep_command(sweep["command"])):
        is_macro = part.startswith("${") and part.endswith("}")
        command += (variables.get(part[2:-1]) or []) if is_macro else [part]
    return command


def test_a_wandb_sweep_agent_drives_train_py_through_hydra_overrides(tmp_path: Path) -> None:
    sweep = yaml.safe_load((REPO_ROOT / "docs" / "wandb_sweep_gamma.yaml").read_text())
    assert sweep["metric"] == {"name": "val/acc_best", "goal": "maximize"}
    values = {name: spec["values"][1] for name, spec in sweep["parameters"].items()}  # one sample of the grid
    command = agent_command(sweep, values)
    assert command[:3] == ["/usr/bin/env", sys.executable, "train.py"]
    assert "smoothing=gamma" in command and f"smoothing.gamma={values['smoothing.gamma']}" in command
    # As the agent runs it (its run id in the environment), plus a short budget and this test's output folder.
    env = subprocess_env(WANDB_RUN_ID="agentrun01", HYDRA_FULL_ERROR="1")
    extra = ["debug=fast", f"paths.log_dir={tmp_path}", "trainer.enable_progress_bar=false"]
    done = subprocess.run([*command, *extra], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (metrics_file,) = (tmp_path / "runs").glob("*/*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert metrics["status"] == "completed" and metrics["smoothing.gamma"] == values["smoothing.gamma"]
    assert metrics["seed"] == values["seed"] and metrics["wandb.id"] == "agentrun01"
    page = offline_run_of(metrics_file.parent)
    assert page.exit_code == 0 and page.config["smoothing"]["gamma"] == values["smoothing.gamma"]
    assert page.config["seed"] == values["seed"] and "val/acc_best" in page.summary
    assert os.environ.get("WANDB_RUN_ID") is None  # nothing leaked into this process

"""Evaluate a saved checkpoint: ``python eval.py ckpt_path=<run>/checkpoints/best-epochNNN.ckpt [dataset=...]``.

Checkpoints hold weights only (no hyperparameters), so the model, the smoothing strategy (whose buffers are
part of the weights) and, unless ``dataset=`` is given, the data set are rebuilt from the run's composed config
``<run>/.hydra/config.yaml`` (the checkpoint lives in ``<run>/checkpoints/``). The weights are loaded with
``weights_only=True``. The same metrics as in training (accuracy, NLL, ECE, adaptive ECE, MCE, RMS, Brier,
confidence, entropy) are computed on the validation and test splits, with the reliability diagrams and the
temperature fitted on the validation logits (``labelsmooth.callbacks.CalibrationCallback``). Outputs go to
``outputs/eval/<date>/<time>/``: ``metrics.json`` and ``calibration/``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from labelsmooth.run_outputs import METRICS_FILE, read_metrics_json
from labelsmooth.train import (
    CONFIG_DIR,
    RunContext,
    as_compact_user_error,
    build_module,
    error_message,
    finish_wandb,
    instantiate_logger,
    log_failure,
    root_cause,
    smoothing_parameters,
    wandb_config,
)

log = logging.getLogger(__name__)

EXAMPLE_CKPT = "outputs/runs/<date>/<time>/checkpoints/best-epoch012.ckpt"
WHERE_CHECKPOINTS_ARE = (
    "Checkpoints are under outputs/runs/<date>/<time>/checkpoints/ (sweeps: outputs/multirun/<date>/<time>/<job>/"
    "checkpoints/)."
)


class EvaluationError(ValueError):
    """A checkpoint that cannot be evaluated as asked, with what to do about it."""


def checkpoint_path(cfg: DictConfig) -> str:
    """``cfg.ckpt_path``, or an ``EvaluationError`` that says how to give it."""
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.get("ckpt_path"):
        raise EvaluationError(
            f"ckpt_path= is required: the checkpoint to evaluate, e.g. python eval.py ckpt_path={EXAMPLE_CKPT}"
        )
    return str(cfg.ckpt_path)


def _newest_checkpoint(log_dir: str | Path | None) -> Path | None:
    """The most recently written ``best-*.ckpt`` of the runs under ``log_dir`` (a suggestion for a wrong path)."""
    if not log_dir or not Path(log_dir).is_dir():
        return None
    root = Path(log_dir)
    found = [*root.glob("runs/*/*/checkpoints/best-*.ckpt"), *root.glob("multirun/*/*/*/checkpoints/best-*.ckpt")]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (as a user would type it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def missing_checkpoint_message(ckpt_path: str | Path, log_dir: str | Path | None = None) -> str:
    """Why ``ckpt_path`` is not a checkpoint file, and where the checkpoints are."""
    path = Path(ckpt_path)
    if path.is_dir():
        inside = sorted([*path.glob("*.ckpt"), *path.glob("checkpoints/*.ckpt")])
        if inside:
            return f"ckpt_path={ckpt_path} is a directory: give a .ckpt file, e.g. ckpt_path={_shown(inside[0])}"
        return f"ckpt_path={ckpt_path} is a directory with no .ckpt file. {WHERE_CHECKPOINTS_ARE}"
    newest = _newest_checkpoint(log_dir)
    suggestion = f" The newest: ckpt_path={_shown(newest)}" if newest else ""
    return f"ckpt_path={ckpt_path}: no such checkpoint file. {WHERE_CHECKPOINTS_ARE}{suggestion}"


def run_directory(ckpt_path: str | Path) -> Path:
    """The training run a checkpoint belongs to: ``<run>/checkpoints/<file>.ckpt`` → ``<run>``."""
    return Path(ckpt_path).resolve().parent.parent


def load_run_config(ckpt_path: str | Path, log_dir: str | Path | None = None) -> tuple[DictConfig, dict[str, str]]:
    """The run's composed config and its config-group choices (``dataset``, ``model``, ``smoothing``); ``log_dir``
    (``paths.log_dir``) is where to look for a checkpoint to suggest when ``ckpt_path`` does not exist."""
    run_dir = run_directory(ckpt_path)
    config_file = run_dir / ".hydra" / "config.yaml"
    if not Path(ckpt_path).is_file():
        raise EvaluationError(missing_checkpoint_message(ckpt_path, log_dir))
    if not config_file.is_file():
        raise EvaluationError(
            f"no run config at {config_file}: eval.py rebuilds the model from the config of the run the checkpoint "
            "belongs to, so the checkpoint must stay in <run>/checkpoints/ next to <run>/.hydra/"
        )
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    choices: dict[str, str] = {}
    if hydra_file.is_file():
        runtime = OmegaConf.load(hydra_file).hydra.get("runtime", {})
        choices = {str(k): str(v) for k, v in (runtime.get("choices") or {}).items() if v is not None}
    if (run_dir / METRICS_FILE).is_file():  # the names the run recorded win (model: ResNetV1-20, not a preset path)
        try:
            recorded = read_metrics_json(run_dir)
            choices.update({k: str(recorded[k]) for k in ("dataset", "model", "smoothing") if recorded.get(k)})
        except ValueError:
            pass
    return OmegaConf.load(config_file), choices


PREPROCESSING_KEYS = ("normalize", "input_range")


def dataset_for_evaluation(trained_on: DictConfig, requested: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The ``dataset=`` config of an evaluation, with the input preprocessing the run was trained with
    (``normalize``, ``input_range``: e.g. ``experiment=mezzini2019``'s per-pixel mean subtraction): a model gives
    its accuracy only on inputs prepared as in training. A key given on the command line
    (``dataset.normalize=...``) wins."""
    from labelsmooth.resume import override_key

    given = {override_key(o) for o in overrides}
    merged = copy.deepcopy(requested)
    kept = []
    with open_dict(merged):
        for key in PREPROCESSING_KEYS:
            if key in trained_on and key in merged and f"dataset.{key}" not in given:
                if merged[key] != trained_on[key]:
                    kept.append(f"{key}={OmegaConf.to_container(trained_on, resolve=True)[key]}")
                merged[key] = trained_on[key]
    if kept:
        log.info("The run's input preprocessing is kept for the evaluation data set: %s", ", ".join(kept))
    return merged


def evaluate(
    cfg: DictConfig, output_dir: Path, dataset_choice: str | None = None, context: RunContext | None = None
) -> dict[str, Any]:
    """Validate and test ``cfg.ckpt_path``; write ``metrics.json`` into ``output_dir``; return the summary.

    The logger is set up as in training (``logger=wandb logger.offline=false`` without a login or network logs
    offline, with one warning); a W&B run it starts is finished with exit code 0, or 1 when the evaluation failed.
    ``context`` (default: a single run in ``output_dir``) names and groups that W&B run."""
    import pytorch_lightning as pl
    from pytorch_lightning.utilities import rank_zero_only

    from labelsmooth.callbacks import CalibrationCallback
    from labelsmooth.checkpoints import CheckpointMismatchError, check_checkpoint_matches
    from labelsmooth.run_outputs import write_metrics_json
    from labelsmooth.wandb_setup import redact_secrets

    context = context or RunContext(output_dir=Path(output_dir))
    summary: dict[str, Any] = {"status": "running"}
    logger: Any = None
    exit_code = 1
    try:
        ckpt_path = checkpoint_path(cfg)
        summary["checkpoint"] = str(Path(ckpt_path).resolve())
        summary["run_dir"] = str(run_directory(ckpt_path))
        run_cfg, choices = load_run_config(ckpt_path, cfg.paths.get("log_dir"))
        with open_dict(run_cfg):
            run_cfg.paths = cfg.paths  # data_dir and output_dir of this evaluation
            if cfg.get("dataset"):
                run_cfg.dataset = dataset_for_evaluation(run_cfg.dataset, cfg.dataset, context.overrides)
        summary.update(
            {
                "seed": run_cfg.get("seed"),
                "dataset": dataset_choice or choices.get("dataset", "?"),
                "trained_on": choices.get("dataset", "?"),
                "model": choices.get("model", "?"),
                "smoothing": choices.get("smoothing", "?"),
                **smoothing_parameters(run_cfg.get("smoothing")),
            }
        )
        pl.seed_everything(cfg.seed, workers=True)
        datamodule = hydra.utils.instantiate(run_cfg.dataset)
        datamodule.prepare_data()
        datamodule.setup("fit")
        module = build_module(run_cfg, datamodule)
        try:
            checkpoint = check_checkpoint_matches(ckpt_path, module)
        except CheckpointMismatchError as error:
            if not dataset_choice:
                raise
            raise EvaluationError(
                f"{error} With dataset={dataset_choice} the data set must have the classes and image shape the model "
                f"was trained on (it was trained on {choices.get('dataset', '?')})."
            ) from error
        module.load_state_dict(checkpoint["state_dict"])
        module.val_acc_best.reset()  # the checkpoint holds training's best; val/acc_best here is this evaluation's
        calibration = CalibrationCallback(output_dir=str(output_dir), n_bins=cfg.n_bins)
        logger = instantiate_logger(_as_eval_job(cfg), context)
        if logger:
            logger.log_hyperparams(evaluation_config(run_cfg, choices, summary))
        trainer = hydra.utils.instantiate(
            cfg.trainer, callbacks=[calibration], logger=logger, enable_checkpointing=False
        )
        for results in (
            trainer.validate(module, datamodule=datamodule, verbose=False),
            trainer.test(module, datamodule=datamodule, verbose=False),
        ):
            summary.update({key: float(value) for key, value in results[0].items()})
        summary["status"] = "completed"
        exit_code = 0
        return summary
    except BaseException as error:
        cause = root_cause(error)
        summary["status"] = "failed"
        summary["error_type"] = type(cause).__name__
        summary["error"] = redact_secrets(error_message(cause))
        log_failure(f"{summary['error_type']}: {summary['error']}", to_console=False)
        raise
    finally:
        if rank_zero_only.rank == 0:
            write_metrics_json(output_dir, summary)
        finish_wandb(logger, exit_code, summary)


def evaluation_config(run_cfg: DictConfig, choices: dict[str, str], summary: dict[str, Any]) -> dict[str, Any]:
    """The W&B config of an evaluation: the evaluated run's config and config-group names (``wandb_config``), the
    data set evaluated on, and where the checkpoint and its run are."""
    config = wandb_config(run_cfg, {**choices, "dataset": str(summary.get("dataset", choices.get("dataset", "")))})
    from labelsmooth.wandb_setup import redact_secrets

    block = {key: summary.get(key) for key in ("checkpoint", "run_dir", "dataset", "trained_on") if key in summary}
    config["evaluation"] = redact_secrets(block)
    return config


def _as_eval_job(cfg: DictConfig) -> DictConfig:
    """``cfg`` with the W&B logger's ``job_type: train`` (conf/logger/wandb.yaml) changed to ``eval``."""
    logger_cfg = cfg.get("logger")
    if not logger_cfg or not str(logger_cfg.get("_target_", "")).endswith("WandbLogger"):
        return cfg
    if logger_cfg.get("job_type") != "train":
        return cfg
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.logger.job_type = "eval"
    return cfg


def print_summary(summary: dict[str, Any], output_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['checkpoint']} on {summary['dataset']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(k for k in summary if k.startswith(("val/", "test/")) or k == "temperature"):
        table.add_row(key, f"{summary[key]:.4f}")
    console = Console()
    console.print(table)
    console.print(f"outputs: {output_dir}")


def _context_from_hydra() -> RunContext:
    """This job as ``train.py`` sees its own; the W&B run is named by its overrides less ``ckpt_path`` (long, and
    recorded in ``metrics.json``)."""
    from hydra.core.hydra_config import HydraConfig

    overrides = sorted(str(o) for o in HydraConfig.get().overrides.task if not str(o).startswith("ckpt_path="))
    return dataclasses.replace(RunContext.from_hydra(), override_dirname=",".join(overrides))


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    """Evaluate; configuration, data and file problems end the run with one line (as in ``train.py``: the full
    traceback with ``HYDRA_FULL_ERROR=1``) and exit code 1."""
    from pytorch_lightning.utilities import rank_zero_only

    from labelsmooth.quiet import silence_library_noise

    silence_library_noise()
    context = _context_from_hydra()
    try:
        summary = evaluate(cfg, context.output_dir, dataset_choice=context.choices.get("dataset"), context=context)
    except Exception as error:
        compact = as_compact_user_error(error)
        if compact is error:
            raise
        raise compact from error
    if rank_zero_only.rank == 0:
        print_summary(summary, context.output_dir)
    return summary.get("test/acc")

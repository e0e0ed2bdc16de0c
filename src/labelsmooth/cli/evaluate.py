"""Evaluate a saved checkpoint: ``python eval.py ckpt_path=<run>/checkpoints/best-epochNNN.ckpt [dataset=...]``.

A checkpoint carries its run specification, so the model, the smoothing strategy (whose buffers are part of the
weights) and, unless ``dataset=`` is given, the data set with the run's preprocessing are rebuilt from the
checkpoint alone, wherever it was copied (``labelsmooth.cli.saved``; a checkpoint written before checkpoints carried
one is rebuilt from its run's ``<run>/.hydra/config.yaml``). The weights are loaded with ``weights_only=True``.
The same metrics as in training (accuracy, NLL, ECE, adaptive ECE, MCE, RMS, Brier, confidence, entropy, and the
temperature-scaled ones) are computed on the validation and test splits; reliability diagrams are drawn by
``labelsmooth.callbacks.CalibrationCallback``. Outputs go to ``outputs/eval/<date>/<time>/``: ``metrics.json``,
``calibration/`` and ``predictions/``.
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

from labelsmooth.cli.build import CONFIG_DIR, build_datamodule, trainer_training_settings
from labelsmooth.cli.checks import check_added_keys, check_devices, set_num_threads
from labelsmooth.cli.context import job_context
from labelsmooth.cli.errors import run_app
from labelsmooth.cli.lifecycle import RunLifecycle
from labelsmooth.cli.options import with_known_options
from labelsmooth.cli.resolvers import register_resolvers
from labelsmooth.cli.saved import SavedRun, checkpoint_path, dataset_for_evaluation
from labelsmooth.cli.schema import validate_run_config
from labelsmooth.cli.tracking import (
    add_wandb_tags,
    instantiate_logger,
    log_records_to_wandb,
    wandb_config,
    wandb_record,
)
from labelsmooth.runs.context import RunContext
from labelsmooth.runs.files import checkpoint_run_directory, recorded_metrics
from labelsmooth.runs.overrides import override_key
from labelsmooth.runs.record import strategy_parameters
from labelsmooth.runs.result_guard import refuse_a_training_run
from labelsmooth.runs.saved_run import EvaluationError
from labelsmooth.tracking.wandb_run import is_wandb, redact_secrets

__all__ = ["EvaluationError", "evaluate", "main"]

register_resolvers()
log = logging.getLogger(__name__)


def evaluate(
    cfg: DictConfig, output_dir: Path, dataset_choice: str | None = None, context: RunContext | None = None
) -> dict[str, Any]:
    """Validate and test ``cfg.ckpt_path``; write ``metrics.json`` into ``output_dir``; return the summary.

    The logger is set up as in training (``logger=wandb logger.offline=false`` without a login or network logs
    offline, with one warning); a W&B run it starts is finished with exit code 0, or 1 when the evaluation failed.
    ``context`` (default: a single run in ``output_dir``) names and groups that W&B run."""
    import pytorch_lightning as pl
    import torch

    from labelsmooth.callbacks import CalibrationCallback, progress_bar
    from labelsmooth.runs.checkpoints import CheckpointMismatchError, check_weights_fit
    from labelsmooth.runs.provenance import device_record

    context = context or RunContext(output_dir=Path(output_dir))
    with RunLifecycle(context, {}, summary_keys=("temperature",)) as run:
        refuse_a_training_run(context.output_dir)
        run.claim()
        ckpt_path = checkpoint_path(cfg)
        evaluated = evaluated_run(ckpt_path)
        # The W&B run starts first, so an evaluation refused for its settings is a failed W&B run too. It joins the
        # group of the run it evaluates and names it.
        run.logger = instantiate_logger(_as_eval_job(cfg), context, group=evaluated.get("wandb_group") or None)
        run.summary.update(wandb_record(run.logger))
        if run.logger:
            run.logger.log_hyperparams({**wandb_config(cfg, context.choices), "evaluated_run": evaluated})
        check_added_keys(cfg, context.overrides, context.choices)
        required = ("seed", "trainer", "paths", "n_bins", "figures", "save_predictions", "predictions_max_values")
        validate_run_config(cfg, required=required)
        check_devices(cfg.trainer)
        set_num_threads(cfg.get("num_threads"))
        run.summary["checkpoint"] = str(Path(ckpt_path).resolve())
        run.summary["run_dir"] = evaluated["run_dir"]
        given_bins = "n_bins" in {override_key(o) for o in context.overrides}  # else the run's
        saved = SavedRun.of_checkpoint(ckpt_path, cfg.paths, n_bins=cfg.n_bins if given_bins else None)
        run.summary["n_bins"] = int(saved.config.n_bins)
        dataset_cfg = saved.dataset
        if cfg.get("dataset"):
            dataset_cfg = dataset_for_evaluation(saved.dataset, cfg.dataset, context.overrides, saved.image_shape)
        run.summary.update(
            {
                "seed": saved.seed,
                "dataset": dataset_choice or saved.names.get("dataset", "?"),
                "trained_on": saved.names.get("dataset", "?"),
                "model": saved.names.get("model", "?"),
                "smoothing": saved.names.get("smoothing", "?"),
                **strategy_parameters(saved.smoothing),
                "num_threads": torch.get_num_threads(),
            }
        )
        run.title = f"{run.summary['checkpoint']} on {run.summary['dataset']}"

        pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the seed is in metrics.json
        datamodule = build_datamodule(dataset_cfg)
        saved.check_image_shape(datamodule)
        saved.preprocess_as_trained(datamodule)
        module = saved.module_for(datamodule)
        try:
            check_weights_fit(saved.checkpoint, module, ckpt_path, remedy="")  # the model is the checkpoint's
        except CheckpointMismatchError as error:
            if not dataset_choice:
                raise
            raise EvaluationError(
                f"{error} With dataset={dataset_choice} the data set must have the classes and image shape the model "
                f"was trained on (it was trained on {saved.names.get('dataset', '?')})."
            ) from error
        evaluated_names = datamodule.class_names
        if saved.class_names and evaluated_names and list(saved.class_names) != list(evaluated_names):
            raise EvaluationError(
                f"the checkpoint was trained on the classes {', '.join(saved.class_names)}, the evaluated data has "
                f"{', '.join(evaluated_names)}: its labels would be matched by position. Evaluate on data with the "
                "training classes, in their order."
            )
        saved.load_into(module)
        # the checkpoint holds training's best; val/acc_best here is this evaluation's
        module.val_acc_best.reset()
        module.val_acc_best_epoch = None
        calibration = CalibrationCallback(
            output_dir=str(output_dir),
            n_bins=int(saved.config.n_bins),
            figures=cfg.figures,
            save_predictions=cfg.save_predictions,
            predictions_max_values=cfg.predictions_max_values,
        )
        run.summary["precision"] = evaluation_precision(cfg, saved.config, context.overrides)
        # the progress as in training: lines without a terminal (logs, SLURM), a rich bar in one
        shown = [progress_bar()] if cfg.trainer.get("enable_progress_bar", True) else []
        trainer = hydra.utils.instantiate(
            cfg.trainer, callbacks=[calibration, *shown], logger=run.logger, enable_checkpointing=False
        )
        run.summary["precision"] = str(trainer.precision)  # what Lightning computes in: 16-mixed is bf16 on a CPU
        if run.logger:
            evaluated_as = evaluation_config(saved.config, saved.names, run.summary, dataset_cfg, cfg.trainer.precision)
            run.logger.log_hyperparams(evaluated_as)
            add_wandb_tags(run.logger, [saved.names.get("smoothing", "")])  # as its run is tagged
        for results in (
            trainer.validate(module, datamodule=datamodule, verbose=False),
            trainer.test(module, datamodule=datamodule, verbose=False),
        ):
            run.summary.update({key: float(value) for key, value in results[0].items()})
        run.summary.update(module.per_class_record())  # val/ and test/acc_per_class, test/acc_worst_class
        run.summary.update(calibration.run_record())
        run.summary.update(datamodule.run_record())  # validation_split: test, where it validates
        run.summary.update(device_record(trainer))
        log_records_to_wandb(run.logger, run.summary)  # test/acc_worst_class exact, as a training run's
        run.complete()
    return run.summary


def evaluation_precision(cfg: DictConfig, trained: DictConfig, overrides: Sequence[str]) -> str:
    """The precision the evaluation computes in, set in ``cfg.trainer``: the run's (``trainer.precision`` of its
    training: a ``bf16-mixed`` run's logits are its bfloat16 forward pass), unless the command line gives one."""
    if "trainer.precision" not in {override_key(o) for o in overrides}:
        with open_dict(cfg):
            cfg.trainer.precision = trainer_training_settings(trained.get("trainer"))["precision"]
    return trainer_training_settings(cfg.trainer)["precision"]


def evaluated_run(ckpt_path: str | Path) -> dict[str, Any]:
    """The run a checkpoint comes from, as its ``metrics.json`` records it: its directory, W&B run id and group
    (``wandb.*``); for a checkpoint outside its run directory (copied elsewhere, or into another run's
    ``checkpoints/``: ``run_dir`` None), its data set and model's group (``single_run_group``, the group of a single
    run), read from the run specification it carries."""
    from labelsmooth.runs.checkpoints import load_checkpoint
    from labelsmooth.specification import RunSpecification
    from labelsmooth.tracking.wandb_run import single_run_group

    try:  # a checkpoint alone (the errors are the evaluation's to report, when it reads the checkpoint)
        specification = RunSpecification.from_checkpoint(load_checkpoint(ckpt_path), ckpt_path)
    except Exception:
        specification = None
    names = specification.names if specification else {}
    root = checkpoint_run_directory(ckpt_path, names, specification.seed if specification else None)
    evaluated: dict[str, Any] = {"checkpoint": str(Path(ckpt_path).resolve()), "run_dir": root and str(root)}
    recorded = (recorded_metrics(root) if root else None) or {}
    if recorded.get("wandb.id"):
        return {**evaluated, "wandb_id": recorded["wandb.id"], "wandb_group": recorded.get("wandb.group", "")}
    if names.get("dataset") and names.get("model"):
        evaluated["wandb_group"] = single_run_group(names["dataset"], names["model"])
    return evaluated


def evaluation_config(
    run_cfg: DictConfig, choices: dict[str, str], summary: dict[str, Any], dataset_cfg: DictConfig, precision: Any
) -> dict[str, Any]:
    """The W&B config of an evaluation: the evaluated run's config and config-group names (``wandb_config``) with
    the data set (``dataset_cfg``) and precision it was evaluated with, and where the checkpoint and its run are."""
    run_cfg = copy.deepcopy(run_cfg)
    with open_dict(run_cfg):
        run_cfg.dataset = dataset_cfg
        OmegaConf.update(run_cfg, "trainer.precision", precision, force_add=True)
    config = wandb_config(run_cfg, {**choices, "dataset": str(summary.get("dataset", choices.get("dataset", "")))})
    block = {key: summary.get(key) for key in ("checkpoint", "run_dir", "dataset", "trained_on") if key in summary}
    config["evaluation"] = redact_secrets(block)
    return config


def _as_eval_job(cfg: DictConfig) -> DictConfig:
    """``cfg`` with the W&B logger's ``job_type: train`` (conf/logger/wandb.yaml) changed to ``eval``."""
    if not is_wandb(cfg.get("logger")) or cfg.logger.get("job_type") != "train":
        return cfg
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.logger.job_type = "eval"
    return cfg


def _context_from_hydra() -> RunContext:
    """This job as ``train.py`` sees its own; the W&B run is named by its overrides less ``ckpt_path`` (long, and
    recorded in ``metrics.json``)."""
    context = job_context()
    overrides = sorted(o for o in context.overrides if override_key(o) != "ckpt_path")
    return dataclasses.replace(context, override_dirname=",".join(overrides))


@with_known_options(CONFIG_DIR, "eval")
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    """Evaluate; configuration, data and file problems end the run with one line (as in ``train.py``: the full
    traceback with ``HYDRA_FULL_ERROR=1``) and exit code 1."""
    context = _context_from_hydra()
    dataset_choice = context.choices.get("dataset")
    summary = run_app(
        lambda: evaluate(cfg, context.output_dir, dataset_choice, context), context.multirun, resumable=False
    )
    return summary.get("test/acc")

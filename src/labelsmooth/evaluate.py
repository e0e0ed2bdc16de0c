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

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from labelsmooth.run_outputs import METRICS_FILE, read_metrics_json
from labelsmooth.train import CONFIG_DIR, build_module, smoothing_parameters

log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """A checkpoint that cannot be evaluated as asked, with what to do about it."""


def run_directory(ckpt_path: str | Path) -> Path:
    """The training run a checkpoint belongs to: ``<run>/checkpoints/<file>.ckpt`` → ``<run>``."""
    return Path(ckpt_path).resolve().parent.parent


def load_run_config(ckpt_path: str | Path) -> tuple[DictConfig, dict[str, str]]:
    """The run's composed config and its config-group choices (``dataset``, ``model``, ``smoothing``)."""
    run_dir = run_directory(ckpt_path)
    config_file = run_dir / ".hydra" / "config.yaml"
    if not Path(ckpt_path).is_file():
        raise EvaluationError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    if not config_file.is_file():
        raise EvaluationError(
            f"no run config at {config_file}: eval.py rebuilds the model from the config of the run the checkpoint "
            "belongs to, so the checkpoint must stay in <run>/checkpoints/ next to <run>/.hydra/"
        )
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    choices: dict[str, str] = {}
    if (run_dir / METRICS_FILE).is_file():  # the names the run recorded (dataset, model, smoothing)
        try:
            recorded = read_metrics_json(run_dir)
            choices = {k: str(recorded[k]) for k in ("dataset", "model", "smoothing") if recorded.get(k)}
        except ValueError:
            pass
    if hydra_file.is_file():
        runtime = OmegaConf.load(hydra_file).hydra.get("runtime", {})
        choices.update({str(k): str(v) for k, v in (runtime.get("choices") or {}).items() if v is not None})
    return OmegaConf.load(config_file), choices


def evaluate(cfg: DictConfig, output_dir: Path, dataset_choice: str | None = None) -> dict[str, Any]:
    """Validate and test ``cfg.ckpt_path``; write ``metrics.json`` into ``output_dir``; return the summary."""
    import pytorch_lightning as pl
    from pytorch_lightning.utilities import rank_zero_only

    from labelsmooth.callbacks import CalibrationCallback
    from labelsmooth.checkpoints import check_checkpoint_matches
    from labelsmooth.run_outputs import write_metrics_json

    run_cfg, choices = load_run_config(cfg.ckpt_path)
    with open_dict(run_cfg):
        run_cfg.paths = cfg.paths  # data_dir and output_dir of this evaluation
        if cfg.get("dataset"):
            run_cfg.dataset = cfg.dataset
    summary: dict[str, Any] = {
        "status": "running",
        "checkpoint": str(Path(cfg.ckpt_path).resolve()),
        "run_dir": str(run_directory(cfg.ckpt_path)),
        "seed": run_cfg.get("seed"),
        "dataset": dataset_choice or choices.get("dataset", "?"),
        "trained_on": choices.get("dataset", "?"),
        "model": choices.get("model", "?"),
        "smoothing": choices.get("smoothing", "?"),
        **smoothing_parameters(run_cfg.get("smoothing")),
    }
    logger: Any = False
    try:
        pl.seed_everything(cfg.seed, workers=True)
        datamodule = hydra.utils.instantiate(run_cfg.dataset)
        datamodule.prepare_data()
        datamodule.setup("fit")
        module = build_module(run_cfg, datamodule)
        try:
            checkpoint = check_checkpoint_matches(cfg.ckpt_path, module)
        except ValueError as error:
            raise EvaluationError(
                f"{error}. With dataset= the data set must have the classes and image shape the model was trained on."
            ) from error
        module.load_state_dict(checkpoint["state_dict"])
        calibration = CalibrationCallback(output_dir=str(output_dir), n_bins=cfg.n_bins)
        logger = hydra.utils.instantiate(cfg.logger) if cfg.get("logger") and "_target_" in cfg.logger else False
        trainer = hydra.utils.instantiate(
            cfg.trainer, callbacks=[calibration], logger=logger, enable_checkpointing=False
        )
        for results in (
            trainer.validate(module, datamodule=datamodule, verbose=False),
            trainer.test(module, datamodule=datamodule, verbose=False),
        ):
            summary.update({key: float(value) for key, value in results[0].items()})
        summary["status"] = "completed"
        return summary
    except BaseException as error:
        summary["status"] = "failed"
        summary["error_type"] = type(error).__name__
        summary["error"] = str(error)
        raise
    finally:
        if rank_zero_only.rank == 0:
            write_metrics_json(output_dir, summary)
        if type(logger).__name__ == "WandbLogger":
            import wandb

            wandb.finish(exit_code=0 if summary["status"] == "completed" else 1)


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


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from labelsmooth.quiet import silence_library_noise

    silence_library_noise()
    runtime = HydraConfig.get().runtime
    output_dir = Path(runtime.output_dir)
    summary = evaluate(cfg, output_dir, dataset_choice=runtime.choices.get("dataset"))
    from pytorch_lightning.utilities import rank_zero_only

    if rank_zero_only.rank == 0:
        print_summary(summary, output_dir)
    return summary.get("test/acc")

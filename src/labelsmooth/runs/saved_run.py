"""A finished run, found again from one of its checkpoints: ``<run>/checkpoints/<file>.ckpt`` next to
``<run>/.hydra/config.yaml``, the run's composed config, from which evaluation (and a distillation teacher)
rebuilds the model, the strategy and the data set."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from labelsmooth.errors import ConfigurationError
from labelsmooth.runs.files import read_metrics_json
from labelsmooth.runs.layout import RunDirectory
from labelsmooth.runs.overrides import override_key

log = logging.getLogger(__name__)


class EvaluationError(ConfigurationError):
    """A checkpoint that cannot be evaluated (or loaded) as asked, with what to do about it."""


EXAMPLE_CKPT = "outputs/runs/<date>/<time>/checkpoints/best-epoch012.ckpt"
WHERE_CHECKPOINTS_ARE = (
    "Checkpoints are under outputs/runs/<date>/<time>/checkpoints/ (sweeps: outputs/multirun/<date>/<time>/<job>/"
    "checkpoints/)."
)


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


def load_run_config(ckpt_path: str | Path, log_dir: str | Path | None = None) -> tuple[DictConfig, dict[str, str]]:
    """The run's composed config and its config-group choices (``dataset``, ``model``, ``smoothing``); ``log_dir``
    (``paths.log_dir``) is where to look for a checkpoint to suggest when ``ckpt_path`` does not exist."""
    run = RunDirectory.of_checkpoint(ckpt_path)
    config_file = run.config_yaml
    if not Path(ckpt_path).is_file():
        raise EvaluationError(missing_checkpoint_message(ckpt_path, log_dir))
    if not config_file.is_file():
        raise EvaluationError(
            f"no run config at {config_file}: eval.py rebuilds the model from the config of the run the checkpoint "
            "belongs to, so the checkpoint must stay in <run>/checkpoints/ next to <run>/.hydra/"
        )
    hydra_file = run.hydra_yaml
    choices: dict[str, str] = {}
    if hydra_file.is_file():
        runtime = OmegaConf.load(hydra_file).hydra.get("runtime", {})
        choices = {str(k): str(v) for k, v in (runtime.get("choices") or {}).items() if v is not None}
    if run.metrics_json.is_file():  # the names the run recorded win (model: ResNetV1-20, not a preset path)
        try:
            recorded = read_metrics_json(run.root)
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

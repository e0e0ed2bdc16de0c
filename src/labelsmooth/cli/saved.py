"""A trained run found again from one checkpoint, for evaluation (``eval.py``) and distillation (its teacher).

The checkpoint's run specification (``labelsmooth.specification``) says what the run is, so the checkpoint alone
suffices, wherever it was copied. A checkpoint written before checkpoints carried one is rebuilt, as before, from
its run directory's ``.hydra/config.yaml`` (the checkpoint kept in ``<run>/checkpoints/``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from labelsmooth.calibration.bins import DEFAULT_BINS
from labelsmooth.runs.checkpoints import load_checkpoint
from labelsmooth.runs.files import read_metrics_json
from labelsmooth.runs.layout import RunDirectory
from labelsmooth.runs.overrides import override_key
from labelsmooth.runs.saved_run import EXAMPLE_CKPT, EvaluationError, missing_checkpoint_message
from labelsmooth.specification import MissingSpecificationError, RunSpecification

log = logging.getLogger(__name__)


# The run specification's config parts that an evaluation's config carries.
RECORDED_PARTS = ("dataset", "model", "smoothing", "augment", "strategy_schedule", "distill", "optimizer")
RECORDED_PARTS += ("scheduler", "trainer")


@dataclasses.dataclass
class SavedRun:
    """A checkpoint and what it was trained as: ``config`` holds the run's parts (``dataset``, ``model``,
    ``smoothing``, ``augment``, ``strategy_schedule``, ``distill``, ``optimizer``, ``scheduler``, the ``trainer``'s
    training settings, ``seed``) with the ``paths`` of the process reading it, ``names`` the data set, model and
    strategy as the run named them."""

    checkpoint: dict[str, Any]
    config: DictConfig
    names: dict[str, str]
    class_names: list[str] | None = None  # the training data's, as the run specification records them
    preprocessing: dict[str, Any] | None = None  # ``BatchPreprocessor.record()`` of training, statistics included
    image_shape: tuple[int, int, int] | None = None  # (channels, height, width) the model was trained on

    @classmethod
    def of_checkpoint(
        cls, ckpt_path: str | Path, paths: DictConfig | None = None, n_bins: int | None = None
    ) -> SavedRun:
        """The run of ``ckpt_path``; ``paths`` (this process's ``paths``) resolves the data set's ``${paths...}``;
        ``n_bins`` replaces the run's bins of the calibration errors. An ``EvaluationError`` says what is missing."""
        path, run = Path(ckpt_path), RunDirectory.of_checkpoint(ckpt_path)
        paths = paths if paths is not None else OmegaConf.create({})
        if not path.is_file():
            raise EvaluationError(missing_checkpoint_message(ckpt_path, paths.get("log_dir")))
        checkpoint = load_checkpoint(path)  # an unreadable file: CheckpointError, whatever the run directory holds
        try:
            specification = RunSpecification.from_checkpoint(checkpoint, ckpt_path)
        except MissingSpecificationError as missing:
            if not run.config_yaml.is_file():
                raise EvaluationError(f"{missing} (no run config at {run.config_yaml})") from None
            config, names = load_run_config(ckpt_path, paths.get("log_dir"))
            with open_dict(config):
                config.paths = paths
                config.teacher_ckpt = None  # a distilled student is evaluated alone: its teacher is not rebuilt
                # configs from before the top-level n_bins kept it in the calibration callback (default 15)
                older = OmegaConf.select(config, "callbacks.calibration.n_bins", default=DEFAULT_BINS)
                config.n_bins = n_bins if n_bins is not None else config.get("n_bins", older)
            return cls(checkpoint, config, names)
        parts = {key: getattr(specification, key) for key in RECORDED_PARTS}
        config = OmegaConf.create(
            {
                "paths": OmegaConf.to_container(paths, resolve=True),
                **parts,
                "seed": specification.seed,
                "n_bins": specification.n_bins if n_bins is None else n_bins,
                "teacher_ckpt": None,
            }
        )
        for key, value in (specification.selection or {}).items():  # by config key: the checkpoint selection
            OmegaConf.update(config, key, value, force_add=True)
        names = dict(specification.names)
        return cls(
            checkpoint, config, names, specification.class_names, specification.preprocessing, specification.image_shape
        )

    @property
    def dataset(self) -> DictConfig:
        return self.config.dataset

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    @property
    def smoothing(self) -> dict[str, Any] | None:
        node = self.config.get("smoothing")
        return OmegaConf.to_container(node, resolve=True) if node else None

    def preprocess_as_trained(self, datamodule: Any) -> None:
        """Normalise ``datamodule``'s inputs with the training split's statistics the checkpoint records, as
        ``predict`` does, where its ``normalize`` and ``input_range`` are the run's: statistics of the evaluated
        data's own training split (another data set, or another copy of the same files) would adapt the inputs to
        the evaluated data, and partly undo the shift an evaluation measures."""
        import torch

        from labelsmooth.data.image_data import ImageDataModule
        from labelsmooth.data.preprocess import BatchPreprocessor

        if self.preprocessing is None or not isinstance(datamodule, ImageDataModule):
            return
        trained, current = BatchPreprocessor.from_record(self.preprocessing), datamodule.preprocessor
        same_preprocessing = (trained.normalize, trained.input_range) == (current.normalize, current.input_range)
        if not current.needs_statistics or not same_preprocessing or current.mean is None or trained.mean is None:
            return
        if trained.mean.shape != current.mean.shape:
            log.warning(
                "The checkpoint's %s statistics (shape %s) do not fit the evaluated images (%s): they are "
                "normalised with their own training split's",
                trained.normalize, tuple(trained.mean.shape), tuple(current.mean.shape),
            )  # fmt: skip
            return
        if not torch.equal(current.mean.cpu(), trained.mean) or (
            current.std is not None and trained.std is not None and not torch.equal(current.std.cpu(), trained.std)
        ):
            log.info(
                "The inputs are normalised (%s) with the statistics of the run's training split that the checkpoint "
                "records (mean %.4g), not the evaluated data's own (mean %.4g)",
                trained.normalize, float(trained.mean.mean()), float(current.mean.mean()),
            )  # fmt: skip
        current.mean, current.std = trained.mean, trained.std

    def check_image_shape(self, datamodule: Any) -> None:
        """Refuse images of another shape than the model was trained on: a convolutional network with global
        pooling takes them, and its numbers would be those of resized inputs, not the model's."""
        if self.image_shape is None or tuple(datamodule.image_shape) == tuple(self.image_shape):
            return
        shown = lambda shape: "×".join(map(str, shape))  # noqa: E731
        raise EvaluationError(
            f"the evaluated data set's images are {shown(datamodule.image_shape)} (channels×height×width), the model "
            f"was trained on {shown(self.image_shape)} ({self.names.get('dataset', '?')}): evaluate it on images of "
            f"that shape (dataset.image_size={self.image_shape[1]} where the data set resizes its images)"
        )

    def module_for(self, datamodule: Any) -> Any:
        """The run's LightningModule sized for ``datamodule`` (its classes, image shape and preprocessing),
        initialised: the caller checks that the checkpoint's weights fit it, then loads them."""
        from labelsmooth.cli.build import run_specification
        from labelsmooth.module import LabelSmoothingClassifier

        specification = run_specification(self.config, datamodule, self.names)
        return LabelSmoothingClassifier.from_specification(specification, starting_weights=False)

    def load_into(self, module: Any) -> None:
        """The checkpoint's weights and module state into ``module`` (of ``module_for``, checked to fit): its
        strategy takes the parameter values the checkpoint trained with (a schedule's)."""
        module.load_state_dict(self.checkpoint["state_dict"])
        module.on_load_checkpoint(self.checkpoint)


def checkpoint_path(cfg: DictConfig) -> str:
    """``cfg.ckpt_path``, or an ``EvaluationError`` that says how to give it."""
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.get("ckpt_path"):
        raise EvaluationError(
            f"ckpt_path= is required: the checkpoint to evaluate, e.g. python eval.py ckpt_path={EXAMPLE_CKPT}"
        )
    return str(cfg.ckpt_path)


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
# How a data set's files are split into training, validation and test images.
SPLIT_KEYS = ("val_size", "test_size", "split_seed", "trainval")


def dataset_for_evaluation(
    trained_on: DictConfig,
    requested: DictConfig,
    overrides: Sequence[str],
    image_shape: tuple[int, int, int] | None = None,
) -> DictConfig:
    """The ``dataset=`` config of an evaluation, with the input preprocessing the run was trained with
    (``normalize``, ``input_range``: e.g. ``experiment=mezzini2019``'s per-pixel mean subtraction), since a model
    gives its accuracy only on inputs prepared as in training; the model's square image size (of ``image_shape``,
    the checkpoint's) where the data set resizes its images (``image_size``), since the model was trained at that
    size; and, when it is the data set class the run was trained on, the run's split (``val_size``, ``test_size``,
    ``split_seed``), since another split of the same files would validate and test on images the run trained on. A
    key given on the command line (``dataset.normalize=...``) wins."""
    given = {override_key(o) for o in overrides}
    same_data_set = trained_on.get("_target_") == requested.get("_target_")
    merged = copy.deepcopy(requested)
    kept = []
    with open_dict(merged):
        size = image_shape[1] if image_shape is not None and image_shape[1] == image_shape[2] else None
        if size is not None and "image_size" in merged and "dataset.image_size" not in given:
            if merged.image_size != size:
                kept.append(f"image_size={size}")
            merged.image_size = size
        for key in PREPROCESSING_KEYS + (SPLIT_KEYS if same_data_set else ()):
            if key in trained_on and key in merged and f"dataset.{key}" not in given:
                if merged[key] != trained_on[key]:
                    kept.append(f"{key}={OmegaConf.to_container(trained_on, resolve=True)[key]}")
                merged[key] = trained_on[key]
    if kept:
        log.info(
            "The run's input preprocessing, image size and split are kept for the evaluation data set: %s",
            ", ".join(kept),
        )
    other_split = [
        f"dataset.{key}={merged[key]} (the run's: {trained_on[key]})"
        for key in SPLIT_KEYS
        if same_data_set and f"dataset.{key}" in given and key in trained_on and merged.get(key) != trained_on[key]
    ]
    if other_split:
        log.warning(
            "Evaluated on another split than the run's, %s: its validation and test images may include images "
            "the run trained on",
            ", ".join(other_split),
        )
    return merged

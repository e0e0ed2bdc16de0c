"""A trained run found again from one checkpoint, for evaluation (``eval.py``) and distillation (its teacher).

The checkpoint's run specification (``labelsmooth.specification``) says what the run is, so the checkpoint alone
suffices, wherever it was copied. A checkpoint written before checkpoints carried one is rebuilt, as before, from
its run directory's ``.hydra/config.yaml`` (the checkpoint kept in ``<run>/checkpoints/``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from labelsmooth.errors import first_sentence
from labelsmooth.runs.checkpoints import CheckpointError, load_checkpoint
from labelsmooth.runs.layout import RunDirectory
from labelsmooth.runs.saved_run import EvaluationError, load_run_config, missing_checkpoint_message
from labelsmooth.specification import MissingSpecificationError, RunSpecification


@dataclasses.dataclass
class SavedRun:
    """A checkpoint and what it was trained as: ``config`` holds the run's parts (``dataset``, ``model``,
    ``smoothing``, ``augment``, ``optimizer``, ``scheduler``, ``seed``) with the ``paths`` of the process reading
    it, ``names`` the data set, model and strategy as the run named them."""

    checkpoint: dict[str, Any]
    config: DictConfig
    names: dict[str, str]
    specification: RunSpecification | None

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
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError as error:
            if run.config_yaml.is_file():
                raise
            raise EvaluationError(
                f"{first_sentence(error)}; and there is no run config at {run.config_yaml} to rebuild it from"
            ) from None
        try:
            specification = RunSpecification.from_checkpoint(checkpoint, ckpt_path)
        except MissingSpecificationError as missing:
            if not run.config_yaml.is_file():
                raise EvaluationError(f"{missing} (no run config at {run.config_yaml})") from None
            config, names = load_run_config(ckpt_path, paths.get("log_dir"))
            with open_dict(config):
                config.paths = paths
                config.teacher_ckpt = None  # a distilled student is evaluated alone: its teacher is not rebuilt
                if n_bins is not None:
                    config.n_bins = n_bins
            return cls(checkpoint, config, names, None)
        parts = {key: getattr(specification, key) for key in ("dataset", "model", "smoothing", "augment")}
        parts.update(optimizer=specification.optimizer, scheduler=specification.scheduler)
        config = OmegaConf.create(
            {
                "paths": OmegaConf.to_container(paths, resolve=True),
                **parts,
                "seed": specification.seed,
                "n_bins": specification.n_bins if n_bins is None else n_bins,
                "teacher_ckpt": None,
            }
        )
        return cls(checkpoint, config, dict(specification.names), specification)

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

    def module_for(self, datamodule: Any) -> Any:
        """The run's LightningModule sized for ``datamodule`` (its classes, image shape and preprocessing),
        initialised: the caller checks that the checkpoint's weights fit it, then loads them."""
        from labelsmooth.cli.build import run_specification
        from labelsmooth.module import LabelSmoothingClassifier

        return LabelSmoothingClassifier.from_specification(run_specification(self.config, datamodule, self.names))

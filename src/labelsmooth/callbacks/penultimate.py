"""The penultimate-layer picture (Müller et al. 2019, Fig. 1; ``labelsmooth.analysis.projection``) of a run.

At ``on_test_end``, which in ``train`` follows the final ``trainer.test`` on the best checkpoint (so the picture is
of the weights the run's test metrics describe), for three classes (``analysis.projection_classes``): the
penultimate activations of up to ``images_per_class`` training and validation images of each class, without
augmentation and preprocessed as for evaluation, projected onto the plane through the three classes' templates
(rows of the last layer's weight with the class's bias appended, the activations with a 1 appended: Müller et
al.'s ``w_k`` "weights and biases", ``z_k = w_kᵀ[x; 1]``). The images are a fixed-seed sample, the same in every
run on the same data, so the pictures of a sweep compare like with like. The scatter (training and validation side
by side) is written to ``RunDirectory(output_dir).penultimate_projection`` and, under a W&B logger, logged as the
image ``penultimate_projection``.

A model offers its penultimate features as timm's models do: ``forward_head(forward_features(x), pre_logits=True)``
(N, D), with ``get_classifier()`` the last ``nn.Linear`` (this package's ResNets and MLPs, and timm's models). The
picture is skipped, with a log message, for a model without them, a data set with fewer than three classes, or
templates that span no plane. Any other failure to draw it (a data set whose labels cannot be read, a plotting
error) never fails the run, which has its results by then: the picture is skipped with a one-line
``FigureSkippedWarning``, an error in the test suite (``pyproject.toml``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from labelsmooth.analysis.projection import template_plane
from labelsmooth.callbacks.contracts import Classifier, SplitData
from labelsmooth.errors import ConfigurationError, FigureSkippedWarning, describe, is_disk_full, whole_number
from labelsmooth.runs.layout import RunDirectory
from labelsmooth.tracking.wandb_run import is_wandb

log = logging.getLogger(__name__)

SAMPLE_SEED = 0  # which images are drawn: fixed, so every run on the same data draws the same ones


def why_no_penultimate_features(net: Any) -> str | None:
    """Why ``net`` offers no penultimate features and class templates; None when it does."""
    missing = [name for name in ("forward_features", "forward_head", "get_classifier") if not hasattr(net, name)]
    if missing:
        return f"{type(net).__name__} has no {', '.join(missing)} (timm's penultimate-feature API)"
    head = net.get_classifier()
    if not isinstance(head, nn.Linear):
        return f"the last layer of {type(net).__name__} is a {type(head).__name__}, not an nn.Linear with templates"
    return None


def penultimate_features(net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The penultimate activations (N, D): ``net.forward_head(net.forward_features(inputs), pre_logits=True)``."""
    return net.forward_head(net.forward_features(inputs), pre_logits=True)


def sample_of_classes(targets: torch.Tensor, classes: Sequence[int], per_class: int) -> torch.Tensor:
    """Indices of up to ``per_class`` examples of each of ``classes`` (a fixed-seed random sample), class by class."""
    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    chosen = []
    for k in classes:
        of_class = torch.nonzero(targets.long() == k).flatten()
        chosen.append(of_class[torch.randperm(len(of_class), generator=generator)[:per_class]].sort().values)
    return torch.cat(chosen)


def check_projection_classes(classes: Sequence[int] | None) -> tuple[int, int, int]:
    """``classes`` as three distinct class indices (None: the first three), or a ``ConfigurationError``."""
    if classes is None:
        return (0, 1, 2)
    values = list(classes)
    if (
        len(values) != 3
        or len(set(values)) != 3
        or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in values)
    ):
        raise ConfigurationError(
            f"analysis.projection_classes={values!r} must be three distinct class indices >= 0, e.g. [0, 1, 2] "
            "(null: the first three)"
        )
    return values[0], values[1], values[2]


class PenultimateProjection(pl.Callback):
    """Draws the penultimate-layer picture of the evaluated network at the end of each test (see the module).

    Args:
        output_dir: the run directory; ``trainer.default_root_dir`` if None.
        classes: three class indices (``analysis.projection_classes``); None: the first three.
        images_per_class: at most this many images per class and split (``analysis.projection_images_per_class``).
        figures: False: no picture (the run's ``figures=false``).
    """

    def __init__(
        self,
        output_dir: str | None = None,
        classes: Sequence[int] | None = None,
        images_per_class: int = 300,
        figures: bool = True,
    ) -> None:
        super().__init__()
        self.output_dir = output_dir
        self.classes = check_projection_classes(classes)
        self.images_per_class = whole_number("analysis.projection_images_per_class", images_per_class, 1)
        self.figures = figures
        self.drawn_to: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        num_classes = pl_module.num_classes if isinstance(pl_module, Classifier) else None
        if num_classes is not None and num_classes >= 3 and max(self.classes) >= num_classes:
            raise ConfigurationError(
                f"analysis.projection_classes={list(self.classes)} names a class outside 0..{num_classes - 1} "
                f"(the data set has {num_classes} classes)"
            )

    def why_not(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> str | None:
        """Why no picture can be drawn for this run; None when it can."""
        if not isinstance(pl_module, Classifier):
            return "the module is not a classifier with a network (net) and a number of classes"
        if pl_module.num_classes < 3:
            return f"the data set has {pl_module.num_classes} classes; the picture needs three"
        datamodule = trainer.datamodule
        if not isinstance(datamodule, SplitData) or datamodule.train_set is None or datamodule.val_set is None:
            return "the trainer has no data module with training and validation splits"
        net = pl_module.net
        reason = why_no_penultimate_features(net)
        if reason is None:
            try:
                template_plane(self.templates(net))
            except ValueError as error:
                return str(error)
        return reason

    def templates(self, net: nn.Module) -> np.ndarray:
        """The chosen classes' rows of the last layer's weight, each with the class's bias appended (0 without a
        bias): (3, D + 1), float64."""
        head = net.get_classifier()
        rows = head.weight.detach()[list(self.classes)].double().cpu()
        bias = (
            head.bias.detach()[list(self.classes)].double().cpu() if head.bias is not None else torch.zeros(3).double()
        )
        return torch.cat([rows, bias.unsqueeze(1)], dim=1).numpy()

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not self.figures:
            return
        try:
            reason = self.why_not(trainer, pl_module)
            if reason is not None:
                log.info("No penultimate-layer picture: %s.", reason)
                return
            self.draw(trainer, pl_module)
        except Exception as error:  # the run is trained and tested: a figure must not fail it, a full disk does
            if is_disk_full(error):
                raise
            log.debug("The penultimate-layer picture failed:", exc_info=True)
            rank_zero_warn(f"No penultimate-layer picture: {describe(error)}", category=FigureSkippedWarning)

    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path:
        from labelsmooth.analysis.projection import project_onto_template_plane, projection_figure
        from labelsmooth.data.in_memory import dataset_targets
        from labelsmooth.runs.files import save_figure_atomic

        net, datamodule = pl_module.net, trainer.datamodule
        templates = self.templates(net)
        panels = {}
        vertices = None
        validation = "validation" if datamodule.val_set is not datamodule.test_set else "validation (the test split)"
        for title, dataset in (("training", datamodule.train_set), (validation, datamodule.val_set)):
            features, targets = self.features_of(trainer, pl_module, dataset, dataset_targets(dataset))
            with_one = np.concatenate([features, np.ones((len(features), 1))], axis=1)  # [x; 1], as the templates
            coordinates, vertices = project_onto_template_plane(with_one, templates)
            panels[title] = (coordinates, np.argmax(targets[:, None] == np.asarray(self.classes)[None, :], axis=1))
        names = [f"class {k}" for k in self.classes]
        figure = projection_figure(
            panels,
            vertices,
            names,
            title=f"Penultimate layer on the plane of the templates of classes {', '.join(map(str, self.classes))}",
        )
        path = save_figure_atomic(
            figure, RunDirectory(self.output_dir or trainer.default_root_dir).penultimate_projection
        )
        for logger in trainer.loggers:
            if is_wandb(logger):
                logger.log_image(key="penultimate_projection", images=[str(path)])
        self.drawn_to = path
        return path

    def features_of(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, dataset: Any, targets: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """The penultimate activations (float64) and labels of the sampled images of ``dataset``, in batches of
        the evaluation batch size, each batch through the data module's transfer hooks (evaluation preprocessing:
        the trainer is not training). ``why_not`` has checked that the module is a ``Classifier`` and the data
        module ``SplitData``."""
        datamodule, net = trainer.datamodule, pl_module.net
        indices = sample_of_classes(targets, self.classes, self.images_per_class).tolist()
        if not indices:
            return np.empty((0, net.get_classifier().in_features)), np.empty(0, dtype=np.int64)
        batch_size = datamodule.eval_batch_size
        features, labels = [], []
        was_training = net.training
        net.eval()
        try:
            for start in range(0, len(indices), batch_size):
                items = [dataset[i] for i in indices[start : start + batch_size]]
                batch = (
                    torch.stack([torch.as_tensor(x) for x, _ in items]),
                    torch.as_tensor([int(y) for _, y in items]),
                )
                batch = datamodule.on_before_batch_transfer(batch, 0)
                batch = datamodule.transfer_batch_to_device(batch, pl_module.device, 0)
                inputs, batch_targets = datamodule.on_after_batch_transfer(batch, 0)
                with torch.no_grad(), trainer.precision_plugin.forward_context():
                    features.append(penultimate_features(net, inputs).double().cpu())
                labels.append(batch_targets.cpu())
        finally:
            net.train(was_training)
        return torch.cat(features).numpy(), torch.cat(labels).numpy()

    def run_record(self) -> dict[str, Any]:
        """``analysis.projection_classes`` in ``metrics.json`` when the picture was drawn."""
        return {"analysis.projection_classes": list(self.classes)} if self.drawn_to is not None else {}

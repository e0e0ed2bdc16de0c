"""What the callbacks read from the LightningModule and the data module they watch, as types checked with
``isinstance``: protocols (structural types), so that the callbacks, which Lightning attaches to any LightningModule,
need not import the module or the data sets (``labelsmooth.module`` and ``labelsmooth.data`` are beside them, not
below). ``LabelSmoothingClassifier`` is a ``TestedClassifier``; every data module of ``labelsmooth.data`` is
``SplitData`` and ``PreprocessesBatches``. Each protocol holds what one kind of reader needs, no more. A part that
is not one (a bare LightningModule in a test) gets what its caller does without it: no temperature-scaled diagram,
no penultimate picture, the whole module's BatchNorm layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pytorch_lightning import Callback

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from labelsmooth.specification import RunSpecification


@runtime_checkable
class Classifier(Protocol):
    """A LightningModule that classifies with a network ``net`` into ``num_classes`` classes."""

    net: nn.Module
    num_classes: int


@runtime_checkable
class TestedClassifier(Classifier, Protocol):
    """A ``Classifier`` that keeps what its latest test found: the temperature fitted (None without a validation
    before the test), the (K, K) confusion counts, and the run specification its checkpoints carry (None for a
    module built outside a run)."""

    temperature: float | None
    test_confusion_matrix: torch.Tensor | None
    specification: RunSpecification | None


@runtime_checkable
class SplitData(Protocol):
    """A data module with training and validation splits and the batch size of evaluation."""

    train_set: Dataset | None
    val_set: Dataset | None
    eval_batch_size: int


@runtime_checkable
class PreprocessesBatches(Protocol):
    """A data module whose batches get on-device preprocessing (``preprocess_batch(batch, train)``)."""

    def preprocess_batch(self, batch: Any, train: bool) -> Any: ...


class Observer(Callback):
    """A callback that only records what it sees (times, values, files of its own) and never changes training.
    A fused group (``hydra/launcher=fused``) admits a job that adds one, where it refuses any other callback of
    the job's own; it runs in each member's final validation and test, not in the group's fit (whose hooks see
    the group, not the member)."""

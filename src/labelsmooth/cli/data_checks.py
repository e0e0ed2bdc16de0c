"""Checks made once the data is built, where what a run needs depends on the data set: the network's input and
output, and the training batches an epoch has."""

from __future__ import annotations

import logging
import math
from typing import Any

from labelsmooth.cli.model_checks import check_model_accepts
from labelsmooth.errors import ConfigurationError

log = logging.getLogger(__name__)


def check_model_fits_data(net: Any, datamodule: Any) -> None:
    """One forward pass on a zero batch of the data set's shape, so a mismatch fails with a clear message."""
    check_model_accepts(net, tuple(datamodule.image_shape), datamodule.num_classes)


def check_validation_interval(trainer: Any, datamodule: Any) -> None:
    """Refuse an integer ``trainer.val_check_interval`` (training batches between validations within an epoch)
    above the batches of an epoch as the built ``trainer`` counts them: each of its processes' share of the training
    set, cut by its ``limit_train_batches`` (``overfit_batches`` and ``fast_dev_run`` set its limits). Lightning
    refuses it at the start of fit, in a traceback; with ``check_val_every_n_epoch=null`` the interval runs across
    epochs and may be longer. An epoch of no batch is left to Lightning's own message."""
    import math

    interval, limit = trainer.val_check_interval, trainer.limit_train_batches
    if not isinstance(interval, int) or isinstance(interval, bool) or trainer.check_val_every_n_epoch is None:
        return
    try:
        share = math.ceil(len(datamodule.train_set) / trainer.world_size)
    except TypeError:  # a training set of unknown length: Lightning validates at its end
        return
    batches = math.ceil(share / datamodule.batch_size)
    batches = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
    if 0 < batches < interval:
        raise ConfigurationError(
            f"trainer.val_check_interval={interval} exceeds the {batches} training batches of an epoch"
            + (f" in each of {trainer.world_size} processes" if trainer.world_size > 1 else "")
            + f": give at most {batches}, a fraction of an epoch in (0, 1], or trainer.check_val_every_n_epoch=null "
            "to validate every that many batches across epochs"
        )


def training_share(trainer: Any, datamodule: Any) -> int | None:
    """The training samples of an epoch in each process (the sampler pads the shares to one size under DDP); None
    for a training set of unknown length."""
    try:
        return math.ceil(len(datamodule.train_set) / trainer.world_size)
    except TypeError:
        return None


def last_batch_of_one(trainer: Any, datamodule: Any) -> int | None:
    """Each process's training samples (``training_share``) when each epoch's last training batch holds one sample
    of them and the Trainer does not cut the epoch short; None otherwise."""
    share = training_share(trainer, datamodule)
    if share is None or share % datamodule.batch_size != 1 or trainer.limit_train_batches != 1.0:
        return None
    return share


def warn_of_an_unpaired_last_sample(trainer: Any, datamodule: Any, augment: Any) -> None:
    """One warning when batch mixing (``augment``) is on and each epoch's last training batch holds one sample:
    MixUp / CutMix pair a sample with another of its batch, so that one is paired with itself and trains unmixed,
    with the weight of a whole step (timm's ``Mixup`` refuses odd batches altogether)."""
    if augment is not None and datamodule.batch_size == 1:
        log.warning("augment: dataset.batch_size=1: batch mixing cannot pair a sample with another, so none is mixed")
        return
    if augment is None or (share := last_batch_of_one(trainer, datamodule)) is None:
        return
    log.warning(
        "augment: the last training batch of each epoch holds one sample (%d per process, batch size %d), which "
        "batch mixing cannot pair with another: it trains unmixed. A dataset.batch_size that leaves another "
        "remainder avoids it.",
        share, datamodule.batch_size,
    )  # fmt: skip


def check_splits_cover_the_processes(trainer: Any, datamodule: Any) -> None:
    """Refuse a validation or test split with fewer samples than the run's processes: evaluation gives each process
    its own samples without repeating any, and a process with none cannot join the gathering of the metrics' states
    (the run would crash at the end of its first validation)."""
    if trainer.world_size == 1:
        return
    for split, dataset in (("validation", datamodule.val_set), ("test", datamodule.test_set)):
        try:
            size = len(dataset)
        except TypeError:
            continue
        if 0 < size < trainer.world_size:
            raise ConfigurationError(
                f"the {split} split holds {size} sample{'s' if size > 1 else ''}, fewer than the {trainer.world_size} "
                "processes that evaluate it: use fewer trainer.devices, or a larger split"
            )


def check_a_last_batch_of_one_trains(trainer: Any, datamodule: Any, net: Any) -> None:
    """Refuse, before training, a training split whose last batch holds one sample where the network cannot train on
    one: BatchNorm over features of one value per channel (a small image through a deep network, e.g. digits' 8×8
    through timm's resnet18) raises at that batch, after a whole epoch, in a traceback. One training step of a
    copy of the network on the meta device, one sample, tells."""
    import copy

    import torch

    if (share := last_batch_of_one(trainer, datamodule)) is None:
        return
    if not any(isinstance(module, torch.nn.modules.batchnorm._BatchNorm) for module in net.modules()):
        return
    probe = copy.deepcopy(net).to("meta").train()
    try:
        probe(torch.zeros((1, *datamodule.image_shape), device="meta"))
    except ValueError as error:
        if "Expected more than 1 value per channel" not in str(error):
            return  # another matter, which training itself reports
        raise ConfigurationError(
            f"the last training batch of each epoch holds one sample ({share} per process, dataset.batch_size="
            f"{datamodule.batch_size}), on which the model's BatchNorm cannot train (its features are one value "
            "per channel there): choose a dataset.batch_size that leaves another remainder"
        ) from None

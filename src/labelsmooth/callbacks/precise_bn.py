"""Precise BatchNorm: the running statistics recomputed from training batches before each evaluation.

A BatchNorm layer normalises with the statistics of the batch in training and with running estimates
``running ← (1 - m)·running + m·batch`` in evaluation. With a small momentum ``m`` (Keras' 0.99 is ``m = 0.01``)
those estimates average over the last ~1/m steps, so after a short run, or wherever the weights still move fast,
they describe an older network than the one evaluated. Precise BN (Wu & Johnson, "Rethinking 'Batch' in BatchNorm",
2021, §3) replaces them, before evaluating, by the statistics of the current weights on N training batches::

    running_mean = (1/N) Σ_b mean_b,   running_var = (1/N) Σ_b var_b   (var_b: the unbiased batch variance)

the cumulative average BatchNorm computes with ``momentum=None``, which is what ``torch.optim.swa_utils.update_bn``
does (used here: momentum ``None``, ``reset_running_stats``, N forward passes in train mode without gradients, the
momentum put back).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import move_data_to_device
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader, DistributedSampler

from labelsmooth.callbacks.contracts import Classifier, PreprocessesBatches
from labelsmooth.errors import ConfigurationError, whole_number

log = logging.getLogger(__name__)


def batch_norm_layers(net: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm layer of ``net`` (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, timm's ``BatchNormAct2d``)."""
    return [module for module in net.modules() if isinstance(module, _BatchNorm)]


def refuse_without_batch_norm(num_batches: int, net: nn.Module) -> None:
    """``precise_bn=N`` (N > 0) on a network without BatchNorm would recompute nothing while the run records it."""
    if num_batches and not batch_norm_layers(net):
        raise ConfigurationError(
            f"precise_bn={num_batches}: the model ({type(net).__name__}) has no BatchNorm layer whose statistics it "
            "would recompute; set precise_bn=0"
        )


def recompute_batch_norm_statistics(net: nn.Module, inputs: Iterable[torch.Tensor]) -> int:
    """``update_bn`` over ``inputs`` (network inputs on ``net``'s device), with every submodule's train / eval mode
    put back as it was (``update_bn`` restores only the top module's, recursively); the number of batches used."""
    modes = {module: module.training for module in net.modules()}
    used = 0

    def counted() -> Iterator[torch.Tensor]:
        nonlocal used
        for batch in inputs:
            used += 1
            yield batch

    try:
        update_bn(counted(), net)
    finally:
        for module, training in modes.items():
            module.training = training
    return used


class PreciseBatchNorm(Callback):
    """Before each validation and test (also ``trainer.validate/test(ckpt_path=...)`` after ``fit``, which load the
    checkpoint's weights first), recomputes the BatchNorm statistics of the module's network from the first
    ``num_batches`` batches of the training loader (all of them if it has fewer); ``num_batches=0`` is off.

    The batches are those training sees: the data module's training loader (under DDP each process its own
    shard, through a ``DistributedSampler``), moved to the module's device and preprocessed by the data module's
    ``preprocess_batch(batch, train=True)`` (the on-device scaling, normalisation and augmentation of training
    batches), under the training precision. MixUp / CutMix, which the training step applies, are left out:
    evaluation inputs are not mixed. Under DDP each process averages over its own batches, then the processes
    average their statistics, which is the cumulative average over all their batches (equal counts per process, as
    the ``DistributedSampler`` gives). The sanity check before training is not recomputed.

    Every recomputation uses the same batches: the loader's shuffle, the augmentation and any dropout draw from
    generators seeded with ``seed`` (the distributed sampler's shuffle too, at epoch 0), so the statistics are a
    function of the weights alone and evaluating a checkpoint again with this callback (``trainer.validate(ckpt_path=
    best)`` after fit) gives the numbers of the validation that preceded its saving. Those generators are forked,
    so switching precise BN on leaves the training run itself (its data order and augmentation) unchanged.
    """

    def __init__(self, num_batches: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.num_batches = whole_number("precise_bn", num_batches, 0, "training batches; 0: off")
        self.seed = int(seed)

    def run_record(self) -> dict[str, Any]:
        return {"precise_bn": self.num_batches}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        refuse_without_batch_norm(self.num_batches, pl_module.net if isinstance(pl_module, Classifier) else pl_module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.recompute(trainer, pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.recompute(trainer, pl_module)

    def recompute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        net = pl_module.net if isinstance(pl_module, Classifier) else pl_module
        layers = batch_norm_layers(net)
        if self.num_batches == 0 or not layers:
            return
        loader = self._training_loader(trainer)
        device = pl_module.device
        data = trainer.datamodule
        preprocess = data.preprocess_batch if isinstance(data, PreprocessesBatches) else None

        def training_inputs() -> Iterator[torch.Tensor]:
            for batch in islice(loader, self.num_batches):
                batch = move_data_to_device(batch, device)
                if preprocess is not None:
                    batch = preprocess(batch, train=True)
                inputs = batch[0] if isinstance(batch, (list, tuple)) else batch
                yield trainer.precision_plugin.convert_input(inputs)

        cuda_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices), trainer.precision_plugin.train_step_context():
            torch.default_generator.manual_seed(self.seed)
            for index in cuda_devices:
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(self.seed)
            used = recompute_batch_norm_statistics(net, training_inputs())
        if used == 0:
            raise RuntimeError("precise_bn: the training loader gave no batch to recompute BatchNorm's statistics from")
        if trainer.world_size > 1:
            for layer in layers:
                layer.running_mean.copy_(trainer.strategy.reduce(layer.running_mean, reduce_op="mean"))
                layer.running_var.copy_(trainer.strategy.reduce(layer.running_var, reduce_op="mean"))
        log.debug("precise_bn: BatchNorm statistics of %d layers recomputed from %d batches", len(layers), used)

    def _training_loader(self, trainer: pl.Trainer) -> Iterable:
        """The data module's training loader (the loader of ``fit`` without one), made afresh each time so every
        recomputation sees the same batches: under DDP with a ``DistributedSampler`` of its own (this process's shard
        of a shuffle seeded with ``seed``, epoch 0), and without persistent workers (iterating the training loader
        again would reset the workers of an epoch in progress)."""
        datamodule = trainer.datamodule
        loader = datamodule.train_dataloader() if datamodule is not None else trainer.train_dataloader
        if loader is None:
            raise ConfigurationError(
                "precise_bn needs training batches: run it with a data module (trainer.fit/validate/test(datamodule="
                "...)) or after trainer.fit"
            )
        distributed = trainer.world_size > 1
        if not isinstance(loader, DataLoader) or loader.batch_size is None:
            return loader
        if not (distributed or loader.persistent_workers):
            return loader
        sampler = (
            DistributedSampler(loader.dataset, trainer.world_size, trainer.global_rank, shuffle=True, seed=self.seed)
            if distributed
            else loader.sampler
        )
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=sampler,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            drop_last=loader.drop_last,
            worker_init_fn=loader.worker_init_fn,
            multiprocessing_context=loader.multiprocessing_context,
        )

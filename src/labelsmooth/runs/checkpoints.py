"""Checking a checkpoint before training or evaluation starts from it."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins import TorchCheckpointIO
from torch import nn

from labelsmooth.errors import DiskFullError, LabelsmoothError, describe, is_disk_full
from labelsmooth.runs.files import fsync_file, write_bytes_atomic
from labelsmooth.specification import STARTING_WEIGHTS_KEYS


class CheckpointError(LabelsmoothError, ValueError):
    """A checkpoint path that does not exist, is not a Lightning checkpoint, or belongs to another model."""


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint that does not fit the run: its weights another model's (number of classes, input), or
    its training settings (strategy, data, optimizer, schedule, ...) other than those the run continues with."""


def check_checkpoint_path(path: str | Path) -> Path:
    """Raise ``CheckpointError`` unless ``path`` is an existing file (cheap: checked before any data is read)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"ckpt_path={path}: no such file. A run's checkpoints are <run>/checkpoints/best-epochNNN.ckpt and "
            "last.ckpt; to continue an interrupted run, use resume=true instead."
        )
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={path} is a directory; give the .ckpt file inside it")
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Load a Lightning checkpoint with ``weights_only=True`` (no pickled code runs)."""
    path = check_checkpoint_path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for foreign or damaged files
        raise CheckpointError(
            f"ckpt_path={path} is not a readable checkpoint ({describe(error, sentence=True)}): it "
            "is damaged (e.g. a run killed while writing it: use another checkpoint of the run, such as its "
            "best-epochNNN.ckpt) or was not written by this project. Checkpoints are loaded as weights only "
            "(torch.load(weights_only=True)); code pickled in them never runs."
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"ckpt_path={path} is not a Lightning checkpoint (it has no 'state_dict')")
    return checkpoint


def check_weights_fit(
    checkpoint: dict,
    module: nn.Module,
    path: str | Path,
    remedy: str = "Use the model, dataset and smoothing overrides of the run that wrote it (see its "
    ".hydra/overrides.yaml).",
) -> dict:
    """Raise ``CheckpointError`` (ending in ``remedy``) unless the weights of ``checkpoint`` (loaded from ``path`` by
    ``load_checkpoint``) fit ``module`` key for key and shape for shape."""
    saved = checkpoint["state_dict"]
    expected = module.state_dict()
    missing = sorted(expected.keys() - saved.keys())
    unexpected = sorted(saved.keys() - expected.keys())
    reshaped = [
        f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(expected.keys() & saved.keys())
        if hasattr(saved[k], "shape") and tuple(saved[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or reshaped:
        example = (reshaped or missing or unexpected)[0]
        raise CheckpointMismatchError(
            f"ckpt_path={path} belongs to another model: {len(missing)} weights missing, {len(unexpected)} "
            f"unexpected, {len(reshaped)} of another shape (e.g. {example})." + (f" {remedy}" if remedy else "")
        )
    return checkpoint


# What a continued run may set otherwise than the run that wrote its checkpoint: where the data is (a copy moved
# elsewhere) and how it is read (the in-memory and streamed paths give the same pixels). Everything else of the
# specification's training parts must be equal.
HOW_THE_DATA_IS_READ = frozenset(
    {"root", "train_dir", "val_dir", "test_dir", "download", "in_memory", "num_workers", "eval_batch_size"}
)


def check_same_training(written: Any, configured: Mapping[str, Any], path: str | Path) -> None:
    """Refuse to continue training from a checkpoint whose training settings (``written``, the run specification it
    carries; none in older checkpoints) differ from this run's (``configured``: ``cli.build.training_parts``, its
    parts by name): the network, the strategy, its parameters and schedule, batch mixing, distillation, the data
    set's splits, batches and augmentation, the optimizer, the learning-rate schedule, the precision, gradient
    accumulation, the batches of an epoch and clipping, the checkpoint selection and the seed. Otherwise one run
    trains under two settings while ``metrics.json`` records one; and Lightning restores the checkpoint's optimizer
    and scheduler states, so a changed learning rate, or a cosine's ``T_max`` that follows ``trainer.max_epochs``,
    would be ignored as well. Another class is named once (its arguments go with it); a part or setting the
    checkpoint does not record (added to the specification since) is not compared."""
    if not isinstance(written, Mapping):
        return
    changed = []
    for part, value in configured.items():
        if part not in written:
            continue
        differences = _differences(_flat(part, written.get(part)), _flat(part, value))
        another_class = [difference for difference in differences if difference[0] == f"{part}._target_"]
        changed += [
            f"{key.removeprefix('selection.')}={before!r} in the checkpoint, {after!r} here"
            for key, before, after in another_class or differences
            if not (part == "dataset" and key.split(".")[-1] in HOW_THE_DATA_IS_READ)
            and not (part == "model" and key.split(".")[-1] in STARTING_WEIGHTS_KEYS)
        ]
    if changed:
        raise CheckpointMismatchError(
            f"The checkpoint {path} was written with other training settings than this run's: {'; '.join(changed)}. "
            "Continue it with the settings it was written with (a cosine schedule's T_max follows "
            "trainer.max_epochs), or start a new run."
        )


def check_same_classes(written: Any, class_names: Sequence[str] | None, path: str | Path) -> None:
    """Refuse to continue a checkpoint on data of other classes than it was trained on (the class names its run
    specification records, where both name them): weights for as many classes would load, and the run would go
    on training on other images as if they were the same classes."""
    recorded = written.get("class_names") if isinstance(written, Mapping) else None
    if recorded and class_names and list(recorded) != list(class_names):
        raise CheckpointMismatchError(
            f"The checkpoint {path} was trained on the classes {_listed(recorded)}; this run's data has "
            f"{_listed(class_names)}. Continue it on the data it was trained on, or start a new run."
        )


def _listed(names: Sequence[str], shown: int = 6) -> str:
    return ", ".join(names[:shown]) + (f", ... ({len(names)} classes)" if len(names) > shown else "")


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        return {prefix: value}
    return {key: item for name, part in value.items() for key, item in _flat(f"{prefix}.{name}", part).items()}


def _differences(written: Mapping[str, Any], configured: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """The flat keys whose values differ, among those the checkpoint records (a whole part it lacks counts)."""
    keys = written.keys() if any(value is not None for value in written.values()) else {*written, *configured}
    return [
        (key, written.get(key), configured.get(key)) for key in sorted(keys) if written.get(key) != configured.get(key)
    ]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O (``Trainer(plugins=[AtomicCheckpointIO()])``) writing every checkpoint atomically:
    serialised in memory, written to a temporary file next to the checkpoint, fsynced and renamed over it
    (``labelsmooth.runs.files.write_atomic``).

    Lightning's own save writes a temporary file in the system's temporary directory and moves it, which across
    file systems is a copy: a full disk then leaves a truncated checkpoint under its final name. Here a failed write
    leaves the previous file and no partial one, and a full disk is one ``DiskFullError``. Serialising in memory
    first also turns torch's writer errors (a ``RuntimeError`` for a short write) into the file system's own.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes_atomic(path, buffer.getbuffer())


def replace_with_link(target: str, linkpath: str) -> None:
    """Make ``linkpath`` a relative symbolic link to ``target`` (a copy where links are not possible), atomically."""
    temporary = f"{linkpath}.tmp"
    if os.path.lexists(temporary):
        os.remove(temporary)
    try:
        os.symlink(os.path.relpath(target, os.path.dirname(linkpath)), temporary)
    except OSError:
        try:
            shutil.copyfile(target, temporary)
            fsync_file(temporary)
        except BaseException as error:
            if os.path.lexists(temporary):
                os.remove(temporary)
            if is_disk_full(error):
                raise DiskFullError(linkpath, error) from error
            raise
    os.replace(temporary, linkpath)

"""The teacher of a distillation run (``experiment=distill teacher_ckpt=<path>``), loaded from its checkpoint.

A checkpoint describes itself: the run specification it carries rebuilds the teacher's network and strategy exactly
as ``eval.py`` rebuilds them (``labelsmooth.cli.saved.SavedRun``), wherever the checkpoint was copied; a
``metrics.json`` beside its run (``<run>/checkpoints/<file>.ckpt`` → ``<run>``), where there is one, names the
teacher's strategy and parameters for the student's ``metrics.json`` (``teacher.*``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from labelsmooth.cli.saved import SavedRun
from labelsmooth.errors import ConfigurationError, LabelsmoothError, first_sentence
from labelsmooth.runs.files import checkpoint_run_directory, recorded_metrics
from labelsmooth.runs.record import strategy_parameters
from labelsmooth.runs.saved_run import dangling_link_message

log = logging.getLogger(__name__)

EXAMPLE_TEACHER_CKPT = "outputs/runs/<date>/<time>/checkpoints/best-epoch012.ckpt"

# Data set settings a student may set otherwise than its teacher: how batches are loaded and stored, and the
# training-time input augmentation (the teacher sees the student's batches). Every other key (the data set, its
# split, its preprocessing) must be the teacher's: otherwise the teacher was trained on images of the student's
# validation or test split, or is handed inputs prepared otherwise than in its training.
STUDENT_MAY_CHANGE = frozenset(
    {"batch_size", "eval_batch_size", "num_workers", "in_memory", "download", "root", "shift", "hflip"}
)


class TeacherLogits(nn.Module):
    """A trained network read as its strategy reads it: ``criterion.prediction_logits(net(x))``, logits whose
    softmax is the teacher's predictive distribution (the network's logits for every softmax strategy)."""

    def __init__(self, net: nn.Module, criterion: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.criterion = criterion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.criterion.prediction_logits(self.net(x))


def teacher_run(teacher_ckpt: str | Path, paths: DictConfig | None = None) -> tuple[SavedRun, dict[str, Any]]:
    """The teacher's run (``SavedRun``: from the run specification its checkpoint carries, or its run directory's
    config for an older checkpoint) and the ``metrics.json`` record beside it (empty when there is none), or a
    ``ConfigurationError`` that names ``teacher_ckpt`` and what is missing."""
    path = Path(teacher_ckpt)
    if path.is_symlink() and not path.exists():
        raise ConfigurationError(dangling_link_message("teacher_ckpt", path))
    if not path.is_file():
        what = "is a directory: give the .ckpt file inside it" if path.is_dir() else "no such checkpoint file"
        raise ConfigurationError(
            f"teacher_ckpt={teacher_ckpt}: {what}. A teacher is the checkpoint of a finished run, e.g. "
            f"teacher_ckpt={EXAMPLE_TEACHER_CKPT} (docs/strategies.md: Distillation)"
        )
    try:
        saved = SavedRun.of_checkpoint(path, paths)
    except LabelsmoothError as error:
        raise ConfigurationError(f"teacher_ckpt={teacher_ckpt}: {first_sentence(error, limit=400)}") from None
    run_dir = checkpoint_run_directory(path, saved.names, saved.seed)
    return saved, (recorded_metrics(run_dir) if run_dir else None) or {}


def check_same_data(teacher_dataset: DictConfig, student_dataset: DictConfig, teacher_ckpt: str | Path) -> None:
    """Refuse a student data set that differs from the teacher's in anything but ``STUDENT_MAY_CHANGE``."""
    from labelsmooth.cli.build import dataset_as_recorded

    teacher, student = dataset_as_recorded(teacher_dataset), dataset_as_recorded(student_dataset)
    differences = [
        f"dataset.{key}: teacher {teacher.get(key)!r}, student {student.get(key)!r}"
        for key in sorted((teacher.keys() | student.keys()) - STUDENT_MAY_CHANGE)
        if teacher.get(key) != student.get(key)
    ]
    if differences:
        raise ConfigurationError(
            f"teacher_ckpt={teacher_ckpt} was trained on other data than this student ({'; '.join(differences)}): "
            "the teacher would have seen images of the student's validation or test split, or would be given "
            "inputs prepared otherwise than in its training. Train the student with the teacher's dataset= "
            "settings (its .hydra/overrides.yaml)."
        )


def check_teacher_before_data(cfg: DictConfig) -> None:
    """Before any data is read: ``experiment=distill`` without ``teacher_ckpt=`` (or the reverse), a teacher
    checkpoint without its run, ``distill.alpha`` / ``distill.temperature`` out of range, or a student data set
    other than the teacher's each fail with a message that says what to give."""
    if cfg.get("distill") and not cfg.get("teacher_ckpt"):
        raise ConfigurationError(
            "experiment=distill needs teacher_ckpt=<the teacher's checkpoint>, e.g. "
            f"teacher_ckpt={EXAMPLE_TEACHER_CKPT} (train the teacher first; docs/strategies.md: Distillation)"
        )
    if not cfg.get("teacher_ckpt"):
        return
    if not cfg.get("distill"):
        raise ConfigurationError(
            f"teacher_ckpt={cfg.teacher_ckpt} is the teacher of a distillation: add experiment=distill (it sets "
            "distill.alpha and distill.temperature)"
        )
    hydra.utils.instantiate(cfg.distill)
    saved, _ = teacher_run(cfg.teacher_ckpt, cfg.paths)
    check_same_data(saved.dataset, cfg.dataset, cfg.teacher_ckpt)


def teacher_record(teacher_ckpt: str | Path, saved: SavedRun, recorded: dict[str, Any]) -> dict[str, Any]:
    """The student's ``metrics.json`` entries about its teacher: ``teacher.checkpoint``, ``teacher.smoothing`` and
    ``teacher.smoothing.<param>`` as the teacher's ``metrics.json`` recorded them (its run's strategy config and
    name where it has none), and the teacher's ``model``, ``seed``, ``status`` and ``test/acc`` where recorded."""
    if recorded:
        parameters = {key: value for key, value in recorded.items() if key.startswith("smoothing.")}
    else:
        parameters = strategy_parameters(saved.smoothing)
    record: dict[str, Any] = {
        "teacher.checkpoint": str(Path(teacher_ckpt).resolve()),
        "teacher.smoothing": recorded.get("smoothing") or saved.names.get("smoothing", "?"),
    }
    record.update({f"teacher.{key}": value for key, value in parameters.items()})
    record.update(
        {f"teacher.{key}": recorded[key] for key in ("model", "seed", "status", "test/acc") if key in recorded}
    )
    return record


def load_teacher(
    teacher_ckpt: str | Path, datamodule: Any, paths: DictConfig | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """The teacher network (``TeacherLogits``: eval mode, frozen parameters), its run rebuilt for ``datamodule``'s
    classes and image shape with the checkpoint's weights, and its ``teacher_record``."""
    from labelsmooth.runs.checkpoints import CheckpointError, check_weights_fit

    saved, recorded = teacher_run(teacher_ckpt, paths)
    if recorded.get("status") != "completed":
        log.warning(
            "teacher_ckpt=%s: its run's metrics.json says status=%s, not completed: the teacher may be "
            "unfinished (recorded as teacher.status)",
            teacher_ckpt,
            recorded.get("status", "<no metrics.json>"),
        )
    # Building the network draws initial weights (then replaced by the checkpoint's): on a copy of torch's random
    # state, so the student's data order and augmentation are those of the same run without a teacher.
    with torch.random.fork_rng(devices=[]):
        module = saved.module_for(datamodule)
    try:
        check_weights_fit(saved.checkpoint, module, teacher_ckpt)
    except CheckpointError as error:
        raise ConfigurationError(
            f"teacher_ckpt={teacher_ckpt}: its weights do not fit the network of its run on this data set "
            f"({first_sentence(error)})"
        ) from error
    saved.load_into(module)  # its strategy in the state it trained to
    teacher = TeacherLogits(module.net, module.criterion).eval().requires_grad_(False)
    return teacher, teacher_record(teacher_ckpt, saved, recorded)

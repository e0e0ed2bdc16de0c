"""Which jobs of a sweep the fused launcher trains together (``hydra/launcher=fused``).

Jobs fuse when their configs are equal once the keys that can be exact per member are left out (``PER_MEMBER``):
the smoothing strategy and its parameters, the seed (each member's own initialisation, data order, augmentation
and mixing draws), the batch mixing (``augment``), the strategy schedule (driven per member; it also adds its
callback, ``callbacks.strategy_schedule``) and the W&B tags. Anything else (data set, model, optimizer,
scheduler, batch size, epochs, precision) splits the sweep into groups, trained one after another. A job that
cannot be a member at all (``why_not_fusable``) runs alone, as under the basic launcher.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from labelsmooth.cli.fused import Member

log = logging.getLogger("labelsmooth.cli.fused")  # the launcher's lines, under its name

PER_MEMBER = ("seed", "smoothing", "augment", "strategy_schedule", "tags")


@dataclass
class Job:
    """One job of the sweep: its number, overrides and composed config (Hydra's sweep config)."""

    number: int
    overrides: list[str]
    config: DictConfig


@dataclass
class Group:
    """Jobs trained together (``reason`` None) or one job run alone, as the basic launcher runs it (``reason``)."""

    jobs: list[Job] = field(default_factory=list)
    reason: str | None = None

    def describe(self) -> str:
        numbers = ", ".join(f"#{job.number}" for job in self.jobs)
        if self.reason is not None:
            return f"{numbers}: alone ({self.reason})"
        return f"{numbers}: fused, {len(self.jobs)} members"


def group_key(config: DictConfig) -> str:
    """The job's ``shared_settings`` as JSON: jobs with equal keys fuse."""
    return json.dumps(shared_settings(config), sort_keys=True, default=str)


def shared_settings(config: DictConfig, resolve: bool = True) -> dict[str, Any]:
    """The job's config less Hydra's node, the per-member keys and the logger (each member has its own), its values
    resolved (so ``dataset.split_seed=${seed}`` differs between seeds; ``resolve=False``: as written) with the job's
    own directory left out (the locations under it differ by job). A key whose interpolations only the job itself
    resolves (Hydra's runtime) is taken as written."""
    plain = OmegaConf.to_container(config, resolve=False)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    located = OmegaConf.create(plain)
    if isinstance(located.get("paths"), DictConfig) and "output_dir" in located.paths:
        located.paths.output_dir = "<the job's directory>"
    shared: dict[str, Any] = {}
    for key in plain:
        if key in (*PER_MEMBER, "logger"):
            continue
        try:
            node = located[key]
            shared[key] = OmegaConf.to_container(node, resolve=resolve) if OmegaConf.is_config(node) else node
        except Exception:
            shared[key] = plain[key]
    shared["callbacks"] = {k: v for k, v in (shared.get("callbacks") or {}).items() if k != "strategy_schedule"}
    return shared


def why_not_fusable(config: DictConfig) -> str | None:
    """Why this job cannot be a member of a fused group (it then runs alone), or None."""
    from labelsmooth.cli.devices import requested_devices

    trainer = config.get("trainer") or {}
    if str(trainer.get("strategy", "auto")) not in ("auto", "single_device") or requested_devices(trainer) != 1:
        return "a fused group trains on one device (trainer.devices=1, no DDP)"
    if "16" in str(trainer.get("precision", 32)) and "bf16" not in str(trainer.get("precision")):
        return "16-mixed: one gradient scaler would skip every member's step when one overflows; use bf16-mixed or 32"
    if trainer.get("gradient_clip_val") and str(trainer.get("gradient_clip_algorithm") or "norm").lower() != "value":
        return "gradient clipping by norm is not fused: one norm of every member's gradients would clip them all"
    if config.get("teacher_ckpt"):
        return "distillation (a teacher per member) is not fused"
    if config.get("precise_bn"):
        return "precise_bn recomputes BatchNorm statistics per run"
    if config.get("resume") or config.get("ckpt_path"):
        return "resume= and ckpt_path= continue a run of their own"
    if trainer.get("val_check_interval") not in (None, 1.0) or isinstance(trainer.get("val_check_interval"), int):
        return "trainer.val_check_interval: a fused group validates once per epoch"
    if trainer.get("overfit_batches"):
        return "trainer.overfit_batches: Lightning turns off the shuffling of a run alone, not of a fused group"
    if trainer.get("max_time"):
        return "trainer.max_time: a fused group's time limit would be shared by its members"
    if trainer.get("fast_dev_run"):
        return "trainer.fast_dev_run: a run alone writes no checkpoints then, a fused member would"
    return (
        why_optimizer_not_fusable(config.get("optimizer"))
        or why_callbacks_not_fusable(config.get("callbacks"))
        or why_data_not_fusable(config.get("dataset"))
    )


def why_optimizer_not_fusable(optimizer: Any) -> str | None:
    """Why a job's optimizer cannot step a fused group, or None. The group hands each weight to the optimizer as
    one tensor stacked over the members, so only an update elementwise in the weights (plus per-step scalars) is
    each member's own; Adafactor's step size and clipping use norms of the whole tensor, and it factors a stacked
    bias's second moment across members."""
    import hydra
    import torch

    elementwise = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
                   torch.optim.RAdam, torch.optim.RMSprop, torch.optim.Adagrad, torch.optim.Adadelta,
                   torch.optim.ASGD, torch.optim.Rprop)  # fmt: skip
    target = optimizer.get("_target_") if optimizer is not None else None
    try:
        made = hydra.utils.get_object(str(target)) if target else torch.optim.Adam
    except Exception:
        return None  # left to the job, whose own error names it
    if not isinstance(made, type):  # a factory (timm's create_optimizer_v2): its optimizer's class is not known
        return f"optimizer {target}: not an optimizer class, so its update cannot be known to be elementwise"
    if not issubclass(made, elementwise):
        return f"optimizer {target}: its update is not elementwise in the weights, so it would mix the members"
    return None


def callback_objects(callbacks: Any) -> dict[str, Any]:
    """The object (a class, or a factory) each entry of a ``callbacks`` config names by its ``_target_``; entries
    without one, or whose target cannot be imported (the job's to report), are left out."""
    import hydra

    objects = {}
    for name, node in (callbacks or {}).items():
        target = node.get("_target_") if node is not None else None
        if isinstance(target, str):
            try:
                objects[name] = hydra.utils.get_object(target)
            except Exception:
                continue
    return objects


def why_callbacks_not_fusable(callbacks: Any) -> str | None:
    """Why a job's callbacks keep it out of a fused group, or None. The group reproduces per member the project's
    own callbacks (``conf/callbacks/default.yaml``) and the strategy schedule, the checkpoints of
    ``callbacks.checkpoint`` as a ``ModelCheckpoint`` that keeps the best file (or none) and ``last.ckpt`` after
    every validation, and runs an ``Observer`` (a callback that only records) at each member's end; another callback
    (early stopping, a callback of yours) would not run. A target that cannot be imported is the job's to report."""
    from pytorch_lightning.callbacks import LearningRateMonitor

    from labelsmooth.callbacks import (
        CalibrationCallback,
        Observer,
        PenultimateProjection,
        PreciseBatchNorm,
        progress_bar,
    )
    from labelsmooth.callbacks.checkpoint import BestAndLastCheckpoint
    from labelsmooth.callbacks.epoch_log import EpochLogFile
    from labelsmooth.callbacks.nan_guard import NonFiniteLossGuard
    from labelsmooth.callbacks.rng_state import RandomStateCheckpoint

    reproduced = (BestAndLastCheckpoint, LearningRateMonitor, EpochLogFile, NonFiniteLossGuard, PreciseBatchNorm,
                  RandomStateCheckpoint, CalibrationCallback, PenultimateProjection, Observer)  # fmt: skip
    for name, made in callback_objects(callbacks).items():
        node = callbacks[name]
        if name == "strategy_schedule":
            continue
        if made is not progress_bar and not (isinstance(made, type) and issubclass(made, reproduced)):
            return f"callbacks.{name} ({node._target_}) is not one a fused group runs for its members"
        if isinstance(made, type) and issubclass(made, PreciseBatchNorm) and (node.get("num_batches") or 0) > 0:
            return f"callbacks.{name}.num_batches: precise BatchNorm statistics are computed per run"
        monitor = isinstance(made, type) and issubclass(made, LearningRateMonitor)
        if monitor and node.get("logging_interval") != "epoch":
            return f"callbacks.{name}.logging_interval: a fused group logs its members' learning rates per epoch"
        if monitor and (node.get("log_momentum") or node.get("log_weight_decay")):
            return f"callbacks.{name}: a fused group logs its members' learning rates, not momentum or weight decay"
        if isinstance(made, type) and issubclass(made, BestAndLastCheckpoint):
            if name != "checkpoint":
                return f"callbacks.{name}: a fused member's checkpoints follow callbacks.checkpoint alone"
            for key, allowed in CHECKPOINTS_OF_A_MEMBER.items():
                if node.get(key) not in allowed:
                    return f"callbacks.{name}.{key}={node.get(key)}: a fused member keeps its best and last checkpoints"
    return None


# The checkpoint settings a fused member's checkpoints follow (labelsmooth.fused.MemberCheckpoints): the best file
# (save_top_k 1) or none (0), and last.ckpt, written after every validation.
CHECKPOINTS_OF_A_MEMBER = {
    "save_top_k": (0, 1),
    "every_n_epochs": (None, 1),
    "every_n_train_steps": (None, 0),
    "train_time_interval": (None,),
}


def why_data_not_fusable(dataset: Any) -> str | None:
    """Why the data set of a job cannot feed a fused group, or None: the group preprocesses each member's
    batches itself (its own shifts and flips), with an ``ImageDataModule``'s ``preprocess_batch``. A class that
    cannot be imported is left to the job, whose own error names it."""
    import hydra

    from labelsmooth.data import ImageDataModule

    target = dataset.get("_target_") if dataset is not None else None
    try:
        data_class = hydra.utils.get_class(str(target)) if target else None
    except Exception:
        return None
    if data_class is not None and not issubclass(data_class, ImageDataModule):
        return f"the data module {target} is not a labelsmooth.data.ImageDataModule (its batch preprocessing)"
    if dataset.get("in_memory") is not True and (dataset.get("num_workers") or 0) > 0:
        return "streamed data with DataLoader workers kept between epochs draws its validation order once per run"
    return None


def group_jobs(jobs: Sequence[Job], max_members: int | None) -> list[Group]:
    """The jobs in fusable groups of at most ``max_members`` (None: no cap), in order of their first job."""
    groups: dict[str, list[Job]] = {}
    alone: list[Group] = []
    for job in jobs:
        reason = why_not_fusable(job.config)
        if reason is not None:
            alone.append(Group([job], reason))
        else:
            groups.setdefault(group_key(job.config), []).append(job)
    result = list(alone)
    for members in groups.values():
        size = max_members or len(members)
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            single = "the only job of its group" if len(members) == 1 else f"hydra.launcher.max_members={max_members}"
            result.append(Group(chunk, None if len(chunk) > 1 else single))
    return sorted(result, key=lambda group: group.jobs[0].number)


def keys_that_split(groups: Sequence[Group], shown: int = 5) -> list[str]:
    """The settings whose values differ between the jobs of groups that could fuse (what split the grid into them):
    a node whose class (``_target_``) differs by its name alone (``model``), the others by their dotted keys, as
    the configs write them, and those whose values differ once resolved through fusable keys
    (``dataset.split_seed=${seed}``)."""
    targets: set[str] = set()

    def flatten(node: Any, path: str, into: dict[str, str]) -> dict[str, str]:
        if not isinstance(node, dict):
            into[path] = json.dumps(node, sort_keys=True, default=str)
            return into
        if "_target_" in node and path:
            targets.add(path)
            into[path] = str(node["_target_"])
        for key, child in node.items():
            if key != "_target_":
                flatten(child, f"{path}.{key}" if path else str(key), into)
        return into

    configs = [group.jobs[0].config for group in groups if why_not_fusable(group.jobs[0].config) is None]
    written, resolved = ([flatten(shared_settings(c, resolve), "", {}) for c in configs] for resolve in (False, True))
    differ = {key for key in set().union(*written) if len({s.get(key) for s in written}) > 1}
    # As written: trainer.max_epochs, not the scheduler's T_max that follows it; and a setting that differs once
    # resolved through keys that are not among them (dataset.split_seed=${seed}).
    for key in set().union(*resolved) - differ:
        follows = re.findall(r"\$\{([^}]+)\}", written[0].get(key, "")) if written else []
        if len({s.get(key) for s in resolved}) > 1 and (not differ or (follows and not set(follows) & differ)):
            differ.add(key)
    named = sorted(k for k in differ if not any(k.startswith(f"{t}.") for t in differ & targets))
    return named[:shown] + (["..."] if len(named) > shown else [])


def members_that_fit(modules: list[Any], device: Any) -> tuple[int, str]:
    """How many of these members fit on ``device`` together, estimated from their parameters: five copies of the
    weights each (stacked weights, gradients, Adam's two moments, the member's own network) in half the free
    memory (a GPU's, or the machine's available memory). Activations are not counted: on a GPU, an out-of-memory
    error in the group's fit halves the group instead."""
    import torch

    weights = sum(t.numel() * t.element_size() for t in (*modules[0].net.parameters(), *modules[0].net.buffers()))
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        try:
            with open("/proc/meminfo") as meminfo:
                free = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
        except (OSError, StopIteration):
            return len(modules), ""
    size = max(1, min(len(modules), int(free // 2 // max(5 * weights, 1))))
    return size, f"{5 * weights / 2**20:.0f} MiB per member, {free / 2**30:.1f} GiB free on {device.type}"


def who_trains(members: list[Member]) -> str:
    """Which members of a group train, and why the others do not (skipped by ``resume_sweep=true``, or refused)."""
    why = {m.job.number: "completed earlier" if m.done is not None else "refused" for m in members if m.done or m.error}
    training = [f"#{m.job.number}" for m in members if m.job.number not in why]
    return f"{', '.join(f'#{n} {reason}' for n, reason in why.items())}: {', '.join(training) or 'none'} train"


def check_max_members(value: Any) -> int | None:
    """``hydra.launcher.max_members``: None or an integer >= 1 (one line naming the key otherwise)."""
    from labelsmooth.errors import whole_number

    return None if value is None else whole_number("hydra.launcher.max_members", value, 1, "or null: no cap")


def check_batching(value: Any) -> str:
    """``hydra.launcher.batching``: ``loop`` or ``vmap`` (one line naming the key otherwise)."""
    from labelsmooth.errors import ConfigurationError
    from labelsmooth.fused.stacked import BATCHING

    if value not in BATCHING:
        raise ConfigurationError(f"hydra.launcher.batching={value!r} must be one of {', '.join(BATCHING)}")
    return str(value)


def remove_completed_group_checkpoints(
    trained: Sequence[tuple[list[int], Path]], returns: dict[int, Any], fused_dir: Path
) -> None:
    """The group checkpoint (every member's weights and optimizer state: resume state only) of each trained group
    (its jobs' numbers, its directory) whose jobs all completed (``returns``: Hydra's JobReturn by job number):
    each has its own checkpoints and records by then. A group with a failed member keeps it."""
    import shutil

    from hydra.core.utils import JobStatus

    for numbers, group_dir in trained:
        if group_dir.is_dir() and all(
            number in returns and returns[number].status == JobStatus.COMPLETED for number in numbers
        ):
            shutil.rmtree(group_dir, ignore_errors=True)
            log.info("Fused group %s: every member completed; its group checkpoint is removed", group_dir.name)
    if fused_dir.is_dir() and not any(fused_dir.iterdir()):
        fused_dir.rmdir()


def earlier_groups(fused_dir: Path) -> list[tuple[list[int], Path]]:
    """The group directories (``<sweep>/.fused/<job numbers joined by ->``) an interrupted sweep left, with their
    jobs' numbers."""
    named = sorted(fused_dir.iterdir()) if fused_dir.is_dir() else []
    return [([int(n) for n in d.name.split("-")], d) for d in named if d.is_dir() and d.name.replace("-", "").isdigit()]


def warn_of_regrouping(earlier: Sequence[tuple[list[int], Path]], numbers: list[int]) -> None:
    """A warning for each earlier group checkpoint that holds some of the group ``numbers`` but not that group
    (``hydra.launcher.max_members`` changed, or a group that did not fit was halved): it is not continued."""
    for other, other_dir in earlier:
        if set(other) & set(numbers) and other != numbers:
            log.warning("Fused group %s's checkpoint is not continued: its jobs are grouped otherwise now; jobs %s "
                        "train from their start", other_dir.name, numbers)  # fmt: skip


def group_checkpoint_to_continue(group_dir: Path, members: list[Member]) -> Path | None:
    """The group checkpoint a fit continues: ``last.ckpt`` of an interrupted fit of the same jobs, under
    ``resume_sweep=true``; None otherwise (without it a group starts afresh, as the basic launcher's jobs do). The
    members' training settings (``training_parts``) are written next to it, and a group checkpoint written for
    other settings (another grid run into the same sweep directory) is refused in one line, as a run's checkpoint
    (``check_same_training``; a group checkpoint from before they were written is continued)."""
    import json

    from labelsmooth.cli.build import training_parts
    from labelsmooth.errors import ConfigurationError, first_line
    from labelsmooth.runs.checkpoints import CheckpointError, check_same_training
    from labelsmooth.runs.files import write_text_atomic
    from labelsmooth.runs.resume import _checkpoint_progress

    settings = json.loads(json.dumps([training_parts(member.cfg) for member in members], default=str))
    record, resume = group_dir / "members.json", group_dir / "last.ckpt"
    if resume.is_file() and members[0].cfg.get("resume_sweep"):
        damaged = record
        try:
            written = json.loads(record.read_text()) if record.is_file() else [None] * len(settings)
            if not isinstance(written, list):
                raise ValueError(f"not a list but {type(written).__name__}")
            damaged = resume
            _checkpoint_progress(resume)
        except (CheckpointError, OSError, ValueError) as error:
            log.warning("Fused group %s cannot be continued: %s is damaged (%s); its jobs train from their start",
                        group_dir.name, damaged.name, first_line(error))  # fmt: skip
            write_text_atomic(record, json.dumps(settings, indent=1))
            return None
        if len(written) != len(settings):
            raise ConfigurationError(
                f"resume_sweep=true: {resume} holds {len(written)} members, this group {len(settings)}"
            )
        for before, now in zip(written, settings, strict=True):
            check_same_training(before, now, resume)
        return resume
    write_text_atomic(record, json.dumps(settings, indent=1))
    return None

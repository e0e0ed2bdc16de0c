"""The fused launcher's work (``hydra/launcher=fused``): group the sweep's jobs, train each group as one batched
model, then finish every member as a complete run of its own.

A fused group goes through three steps:

1. **Each job's set-up**, through Hydra's ``run_job`` as under the basic launcher (its directory, ``.hydra/``,
   ``train.log``): the config is checked and the strategy built before any data is read; a job that fails here
   fails alone; with ``resume_sweep=true`` a completed job is skipped.
2. **One fit for the group** (``labelsmooth.fused.FusedClassifier``): the data set is read once, each member's
   module is built after seeding with its seed (so its initial weights are its separate run's), and one
   Lightning Trainer trains them all. Each member's best and last checkpoints are written in its own
   ``checkpoints/`` as its run would; the group's own checkpoint (``<sweep>/.fused/<jobs>/last.ckpt``) lets
   ``resume_sweep=true`` continue an interrupted group.
3. **Each job's end**, through ``run_job`` again: the member's own logger (its W&B run, in the sweep's group) gets
   the epoch history, and the member's own Trainer and callbacks validate and test its best checkpoint and write
   ``metrics.json`` (with ``fused_group``), the predictions and the figures, exactly as ``train`` finishes a run.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig, open_dict

from labelsmooth.cli.fused_completion import finish
from labelsmooth.cli.fused_groups import (
    Group,
    Job,
    check_batching,
    check_max_members,
    earlier_groups,
    group_checkpoint_to_continue,
    group_jobs,
    keys_that_split,
    members_that_fit,
    remove_completed_group_checkpoints,
    warn_of_regrouping,
    who_trains,
)
from labelsmooth.tracking.log_files import keep_records
from labelsmooth.tracking.quiet import silence_library_noise

log = logging.getLogger(__name__)


@dataclass
class Member:
    """One job of a fused group, from its set-up to its end."""

    job: Job
    group: list[int] = field(default_factory=list)  # the job numbers trained together
    cfg: DictConfig | None = None
    context: Any = None
    strategy: Any = None
    done: dict[str, Any] | None = None  # resume_sweep: the completed job's metrics
    error: BaseException | None = None
    checked: bool = False  # passed the checks before any data
    module: Any = None
    datamodule: Any = None
    best: str = ""
    epochs: int = 0
    steps: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    failed_epoch: dict[str, float] = field(default_factory=dict)  # failed in fit: that epoch and its rates
    schedule: Any = None  # the strategy schedule (a callback of its run), driven by the group's fit
    setup_log: list[logging.LogRecord] = field(default_factory=list)  # its data set and seed, logged by the group
    fit_log: list[logging.LogRecord] = field(default_factory=list)  # the group's fit (why it stopped)
    lock: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # its directory's, until its end


def launch(launcher: Any, job_overrides: Any, initial_job_idx: int) -> list[Any]:
    """``Launcher.launch`` of the fused launcher: the JobReturns of the jobs, in their order."""
    from hydra.core.utils import configure_log, setup_globals

    from labelsmooth.cli.errors import RunFailed, exit_in_one_line, user_errors_in_one_line

    setup_globals()
    silence_library_noise()  # the group's Trainer is built outside the members' run lifecycles
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    try:
        with user_errors_in_one_line():  # the launcher's settings, before any job starts
            max_members = check_max_members(config.hydra.launcher.get("max_members"))
            batching = check_batching(config.hydra.launcher.get("batching", "loop"))
    except RunFailed as refused:
        exit_in_one_line(refused)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    jobs = []
    for offset, overrides in enumerate(job_overrides):
        number = initial_job_idx + offset
        sweep_config = launcher.hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = number
            sweep_config.hydra.job.num = number
        jobs.append(Job(number, list(overrides), sweep_config))
    groups = group_jobs(jobs, max_members)
    split = f" (split by {', '.join(keys)})" if (keys := keys_that_split(groups)) else ""
    log.info("Fused launcher: %d jobs in %d group%s%s", len(jobs), len(groups), "" if len(groups) == 1 else "s", split)
    for group in groups:
        log.info("\t%s", group.describe())
        for job in group.jobs if group.reason is None else []:
            log.info("\t\t#%d : %s", job.number, " ".join(job.overrides))
    returns: dict[int, Any] = {}
    fused_dir = Path(str(config.hydra.sweep.dir)) / ".fused"
    earlier = earlier_groups(fused_dir)  # an interrupted sweep's group checkpoints
    for group in groups:
        if group.reason is None:
            returns.update(run_fused(launcher, group, batching, earlier))
        else:
            warn_of_regrouping(earlier, [job.number for job in group.jobs])
            returns.update(run_alone(launcher, group.jobs))
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    remove_completed_group_checkpoints(earlier, returns, fused_dir)  # those grouped otherwise now
    return [returns[job.number] for job in jobs]


def _run_job(launcher: Any, job: Job, task: Any) -> Any:
    from hydra.core.utils import run_job

    return run_job(
        hydra_context=launcher.hydra_context,
        task_function=task,
        config=job.config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def run_alone(launcher: Any, jobs: list[Job]) -> dict[int, Any]:
    """Jobs one after another, each through the app's own task, as the basic launcher runs them."""
    from hydra.core.utils import configure_log

    returns = {}
    for job in jobs:
        log.info("\t#%d : %s", job.number, " ".join(job.overrides))
        returns[job.number] = _run_job(launcher, job, launcher.task_function)
        configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    return returns


def run_fused(
    launcher: Any, group: Group, batching: str, earlier: Sequence[tuple[list[int], Path]] = ()
) -> dict[int, Any]:
    """One fused group: each job's set-up, one fit for all (for as many as fit together: ``GroupTooLarge``), each
    job's end. Jobs whose network cannot be fused (``NotFusable``) run one after another instead."""
    from hydra.core.utils import configure_log

    from labelsmooth.fused import NotFusable

    members = [Member(job) for job in group.jobs]
    prepared = {m.job.number: _run_job(launcher, m.job, lambda cfg, m=m: prepare(m, cfg)) for m in members}
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    returns: dict[int, Any] = {}
    trained: list[tuple[list[int], Path]] = []
    fused_dir = Path(str(launcher.config.hydra.sweep.dir)) / ".fused"
    training = [member for member in members if member.error is None and member.done is None]
    if len(training) < len(members):  # the grouping listed them all
        log.info("\t%s", who_trains(members))
    queue = [training]
    while queue and queue[0]:
        together = queue.pop(0)
        numbers = [member.job.number for member in together]
        for member in (candidates := list(together)):
            member.group = numbers
        try:
            group_dir = fused_dir / "-".join(map(str, numbers))
            warn_of_regrouping(earlier, numbers)
            train_group(together, group_dir, batching)  # drops the members whose network could not be built
            for member in candidates:
                member.group = [m.job.number for m in together] if any(m is member for m in together) else []
            trained.append((numbers, group_dir))
        except GroupTooLarge as smaller:
            log.warning("Jobs %s do not fit together (%s): they train in groups of %d.", numbers, smaller, smaller.size)
            queue[:0] = [together[start : start + smaller.size] for start in range(0, len(together), smaller.size)]
        except NotFusable as reason:
            log.warning("Jobs %s are not fused: %s. They run one after another.", numbers, reason)
            returns.update(run_alone(launcher, [member.job for member in together]))
        except Exception as error:  # the group's fit failed: every member records it
            for member in together:
                member.error = error
        except (KeyboardInterrupt, SystemExit) as stop:  # Ctrl-C or SIGTERM (Lightning exits after either)
            record_interruption(launcher, together, stop)
    for member in members:  # a completed job (resume_sweep) is not run again: its .hydra/ files stay its own
        if member.done is not None:
            returns[member.job.number] = prepared[member.job.number]
        elif member.job.number not in returns:
            returns[member.job.number] = _run_job(launcher, member.job, lambda cfg, m=member: finish(m, cfg))
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)  # not the last job's log
    whole = [member.job.number for member in members]  # a fit of them all whose members' ends were interrupted
    remove_completed_group_checkpoints([*trained, (whole, fused_dir / "-".join(map(str, whole)))], returns, fused_dir)
    return returns


def record_interruption(launcher: Any, members: list[Member], stop: BaseException) -> NoReturn:
    """An interrupted group: each member's ``metrics.json`` says ``failed``/``Interrupted`` and how to continue (as
    a job of the basic launcher's says), then the sweep stops with that one line (``resume_sweep=true``
    continues the group from its checkpoint)."""
    from labelsmooth.cli.errors import RunInterrupted, interruption_message

    for member in members:
        member.error = stop
        with contextlib.suppress(SystemExit):  # the member's record is written; the others' follow
            _run_job(launcher, member.job, lambda cfg, m=member: finish(m, cfg))
    raise RunInterrupted(f"Interrupted: {interruption_message(stop, multirun=True)}") from None


class GroupTooLarge(Exception):
    """The members do not fit in memory together; ``size`` of them would."""

    def __init__(self, size: int, why: str) -> None:
        super().__init__(why)
        self.size = size


def prepare(member: Member, cfg: DictConfig) -> float | None:
    """Step 1 for one job: its checks before any data (the strategy built once), or its completed result (whose
    optimized metric it returns to the sweeper)."""
    from labelsmooth.cli.context import context_from_hydra
    from labelsmooth.cli.train import check_before_data, completed_job, describe_run
    from labelsmooth.runs.lock import training_in
    from labelsmooth.runs.result_guard import refuse_other_completed_job, refuse_unfinished_run
    from labelsmooth.runs.sweeps import optimized_value

    member.cfg, member.context = cfg, context_from_hydra()
    try:
        if cfg.get("resume_sweep"):
            context = member.context
            member.done = completed_job(cfg, context.output_dir, context.overrides, context.choices)
            if member.done is not None:
                return optimized_value(member.done, cfg.get("optimized_metric"))
        member.lock.enter_context(training_in(member.context.output_dir))  # RunInUse: another process trains there
        refuse_other_completed_job(member.context, describe_run(cfg, member.context)["overrides"])
        refuse_unfinished_run(member.context, continues=bool(cfg.get("resume_sweep")))
        member.strategy = check_before_data(cfg, member.context)
        member.checked = True
    except Exception as error:
        member.error = error
    return None


def train_group(members: list[Member], group_dir: Path, batching: str = "loop", callbacks: Sequence[Any] = ()) -> None:
    """Step 2: one Trainer fits the members together (with ``callbacks`` besides the progress bar; a training
    step's outputs hold ``member_losses``); each member gets its module (last weights), best checkpoint, epoch
    history and, if its loss became non-finite, its error."""
    import hydra
    import pytorch_lightning as pl
    import torch

    from labelsmooth.callbacks.checkpoint import BestAndLastCheckpoint
    from labelsmooth.cli.build import build_datamodule, build_module, instantiate_trainer
    from labelsmooth.cli.checks import set_num_threads
    from labelsmooth.cli.data_checks import (
        check_a_last_batch_of_one_trains,
        check_model_fits_data,
        warn_of_an_unpaired_last_sample,
    )
    from labelsmooth.cli.train import describe_run, specification_names
    from labelsmooth.fused import (
        FusedClassifier,
        LockstepLoaders,
        MemberCheckpoints,
        MemberRandomState,
        NotFusable,
        check_fusable,
    )

    first = members[0].cfg
    as_job(members[0])
    set_num_threads(first.get("num_threads"))
    with keep_records([]) as data_log:
        datamodule = build_datamodule(first.dataset)
    sample = datamodule.preprocess_batch(next(iter(datamodule.val_dataloader())), train=False)[0][:4]
    built, states, checkpoints = [], [], []
    for member in list(members):
        as_job(member)
        member.setup_log = list(data_log)
        try:
            with keep_records(member.setup_log):
                pl.seed_everything(member.cfg.seed, workers=True)
            names = specification_names(describe_run(member.cfg, member.context))
            module = build_module(member.cfg, datamodule, criterion=member.strategy, names=names)
            check_model_fits_data(module.net, datamodule)
            member.schedule = (
                hydra.utils.instantiate(member.cfg.strategy_schedule) if member.cfg.get("strategy_schedule") else None
            )
            if member.schedule is not None:  # bound here, so that a schedule its strategy refuses fails it alone
                member.schedule.bind(module.criterion, member.cfg.trainer.get("max_epochs"))
        except Exception as error:  # this member fails alone
            member.error = error
            members.remove(member)
            continue
        states.append(MemberRandomState())
        built.append(module)
        callback_cfg = (member.cfg.get("callbacks") or {}).get("checkpoint")
        checkpoints.append(MemberCheckpoints(hydra.utils.instantiate(callback_cfg)) if callback_cfg else None)
    if not members:
        return
    as_job(members[0])
    check_fusable([module.net for module in built], sample, batching)
    if any(len(list(module.parameters())) != len(list(module.net.parameters())) for module in built):
        raise NotFusable("a member's strategy has parameters of its own, which the group's optimizer would not step")

    nan_guard = (first.get("callbacks") or {}).get("nan_guard")  # none: a member trains on, as its run would
    fused = FusedClassifier(
        built,
        states,
        datamodule.preprocess_batch,
        checkpoints,
        nan_guard.get("check_every_n_steps", 10) if nan_guard else None,
        batching,
        [member.schedule for member in members],
    )
    progress = (first.get("callbacks") or {}).get("progress_bar")
    shown = [hydra.utils.instantiate(progress)] if progress and first.trainer.get("enable_progress_bar") else []
    group_checkpoint = BestAndLastCheckpoint(dirpath=str(group_dir), save_last=True, save_top_k=0, monitor=None)
    trainer = instantiate_trainer(
        first,
        logger=False,
        callbacks=[*shown, *callbacks, group_checkpoint],
        default_root_dir=str(group_dir),
        enable_checkpointing=True,  # the group's checkpoint is the launcher's; the members' follow their own config
    )
    check_a_last_batch_of_one_trains(trainer, datamodule, built[0].net)  # the members' networks are of one model
    for member, module in zip(members, built, strict=True):
        with keep_records(member.setup_log):
            warn_of_an_unpaired_last_sample(trainer, datamodule, module.augment)
    size, why = members_that_fit(built, trainer.strategy.root_device)
    if size < len(built):
        raise GroupTooLarge(size, why)
    resume = group_checkpoint_to_continue(group_dir, members)
    if resume is not None:
        log.info("resume_sweep: the fused group %s continues from %s", group_dir.name, resume)
    loaders = LockstepLoaders([datamodule.train_dataloader() for _ in built], states)
    started = time.perf_counter()
    try:
        with keep_records([]) as fit_log:
            trainer.fit(
                fused,
                train_dataloaders=loaders,
                val_dataloaders=datamodule.val_dataloader(),
                ckpt_path=str(resume) if resume is not None else None,
                weights_only=True,
            )
    except torch.cuda.OutOfMemoryError:
        if len(built) == 1:
            raise
        out_of_memory = True
    except BaseException as error:  # also Ctrl-C, SIGTERM: each member keeps the epochs it trained, as its run does
        for index, member in enumerate(members):
            member.module, member.history, member.error = built[index], fused.history[index], error
        raise
    else:
        out_of_memory = False
    if out_of_memory:  # outside the handler, so that the group's tensors can be freed
        del fused, trainer, loaders, built
        torch.cuda.empty_cache()
        raise GroupTooLarge(len(members) // 2, "out of GPU memory")
    epochs = trainer.current_epoch
    log.info(
        "Fused group %s: %d members trained in %.1f s (fit: %d epoch%s)",
        group_dir.name, len(built), time.perf_counter() - started, epochs, "" if epochs == 1 else "s",
    )  # fmt: skip
    for index, member in enumerate(members):
        fused.stacked.copy_to(index, built[index].net)
        member.module, member.datamodule, member.epochs = built[index], datamodule, trainer.current_epoch
        member.steps = trainer.fit_loop.epoch_loop._batches_that_stepped  # where the run's logger stands after fit
        member.best = checkpoints[index].best_path if checkpoints[index] is not None else ""
        member.history = fused.history[index]
        member.error, member.failed_epoch = fused.failures[index], fused.failed_epoch[index]
        member.fit_log = fit_log if member.error is None else []  # a member that failed did not reach its end


def as_job(member: Member) -> None:
    """Hydra's runtime config set to the member's job, so its config's ``${hydra:...}`` resolve to its own."""
    from hydra.core.hydra_config import HydraConfig

    if "hydra" in member.job.config:  # a config composed outside a Hydra app (tests) has its paths set
        HydraConfig.instance().set_config(member.job.config)

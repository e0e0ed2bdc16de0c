"""A fused group: the runs of a sweep that differ only in strategy, seed and batch mixing, trained as one model.

Each member keeps its own ``LabelSmoothingClassifier`` (strategy, batch mixing, metrics, best accuracy), its own
random generators and its own training data order; only the network's forward and backward pass is batched
(``StackedNetworks``) and Lightning's per-step machinery runs once for all members. A member's draws are the ones
its run makes alone, in the same order: its generators are swapped in (``MemberRandomState``) to create its
training iterator and fetch each batch (the shuffle), to augment its batch (shift, flip, MixUp / CutMix) and to
compute its loss (strategies that draw), and at each validation for the one draw its own validation loader would
make. So member m sees the batches and initial weights of its separate run, and its losses equal that run's to
the rounding of batched kernels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from labelsmooth.errors import LabelsmoothError
from labelsmooth.fused.checkpoints import MemberCheckpoints
from labelsmooth.fused.stacked import StackedNetworks
from labelsmooth.lr_schedules import learning_rates
from labelsmooth.models.l2_penalty import L2Terms, l2_penalty
from labelsmooth.module import LabelSmoothingClassifier
from labelsmooth.runs.generators import generator_states, set_generator_states


class MemberFailed(LabelsmoothError):
    """A member of a fused group stopped (its loss became non-finite); the others went on."""


@functools.cache
def _uses_cuda() -> bool:
    return torch.cuda.is_available()


def outside_autocast(preprocess: Callable[[Any, bool], Any]) -> Callable[[Any, bool], Any]:
    """``preprocess`` run outside autocast, as a run alone runs it (Lightning's ``on_after_batch_transfer``), though
    the group calls it inside its steps: under ``bf16-mixed`` autocast would compute the random shift's sampling
    grid (``affine_grid``) in bfloat16, and the member's inputs would differ from its run's."""

    def prepare(batch: Any, train: bool) -> Any:
        device = batch[0].device.type
        if not torch.amp.is_autocast_available(device) or not torch.is_autocast_enabled(device):
            return preprocess(batch, train)
        with torch.autocast(device, enabled=False):
            return preprocess(batch, train)

    return prepare


def as_logged(value: float | torch.Tensor) -> float:
    """``value`` as its run's ``self.log`` stores it: a tensor as it is, a Python number in torch's default dtype
    (float32), so a member's history and its checkpoint ranking read the numbers of its separate run."""
    return float(value if isinstance(value, torch.Tensor) else torch.tensor(value, dtype=torch.get_default_dtype()))


class MemberRandomState:
    """One member's random generators (torch CPU and CUDA, NumPy, Python), captured where it
    is made; inside ``with state:`` they are the global ones, and on leaving they are saved back. Nothing outside
    the members' own draws reads the global generators while a fused group trains, so they are not restored. Kept
    as a run's checkpoint keeps them (``generator_states``), so the group checkpoint loads with ``weights_only``."""

    def __init__(self) -> None:
        self.capture()

    def capture(self) -> None:
        self.states = generator_states(cuda=_uses_cuda())

    def restore(self) -> None:
        set_generator_states(self.states)

    def __enter__(self) -> MemberRandomState:
        self.restore()
        return self

    def __exit__(self, *_: Any) -> None:
        self.capture()

    def state_dict(self) -> dict[str, Any]:
        return self.states

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.states = state


class LockstepLoaders:
    """The members' training loaders, batch i of every member at once; each member's iterator is created and
    advanced under its own random state, as its DataLoader draws its seeds from the global generator."""

    def __init__(self, loaders: Sequence[Any], states: Sequence[MemberRandomState]) -> None:
        self.loaders, self.states = list(loaders), list(states)

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        iterators = []
        for loader, state in zip(self.loaders, self.states, strict=True):
            with state:
                iterators.append(iter(loader))
        for _ in range(len(self)):
            batches = []
            for iterator, state in zip(iterators, self.states, strict=True):
                with state:
                    batches.append(next(iterator))
            yield tuple(batches)


class FusedClassifier(pl.LightningModule):
    """Trains the members' networks as one. ``members``: each member's module as its own run builds it (after
    seeding with its seed), and ``states``: each member's random state right after that build. ``preprocess``: the
    data module's ``preprocess_batch``. After each validation of fit, member m's module gets its current weights
    and ``checkpoints[m]`` (None: none) writes its checkpoints; ``history[m]`` collects its epoch values
    (``epoch``, ``step``, ``train/loss`` and the ``val/*``). ``schedules[m]``: member m's strategy schedule (its
    run's ``StrategyParameterSchedule`` callback, driven here for that member), or None.
    ``check_every_n_steps``: how often the members' losses are checked for non-finite values (one host sync), as
    their runs' ``NonFiniteLossGuard`` does (with their weights, once per epoch before validation); a member whose
    loss or weights are not finite stops alone (``failures[m]``), the others go on, and the fit stops when none is
    left. None: no check (the runs have no guard), a member trains on as its run would."""

    def __init__(
        self,
        members: Sequence[LabelSmoothingClassifier],
        states: Sequence[MemberRandomState],
        preprocess: Callable[[Any, bool], Any],
        checkpoints: Sequence[MemberCheckpoints | None] | None = None,
        check_every_n_steps: int | None = 10,
        batching: str = "loop",
        schedules: Sequence[Any] | None = None,
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.schedules = list(schedules) if schedules is not None else [None] * len(members)
        self.stacked = StackedNetworks([member.net for member in members], batching)
        self.states = list(states)
        self.preprocess = outside_autocast(preprocess)
        self.checkpoints = list(checkpoints) if checkpoints is not None else [None] * len(members)
        self.check_every_n_steps = int(check_every_n_steps) if check_every_n_steps is not None else None
        self._weights_checked_at = -1  # the global step the members' weights were last found finite at
        self.failures: list[MemberFailed | None] = [None] * len(members)
        self.history: list[list[dict[str, float]]] = [[] for _ in members]
        # of a member that failed: the epoch it failed in and its learning rates, logged at the epoch's start
        self.failed_epoch: list[dict[str, float]] = [{} for _ in members]
        self._pending: list[tuple[int, int, torch.Tensor]] = []  # (step, epoch, losses) not yet checked
        self._epoch_values: list[dict[str, float]] = [{} for _ in members]
        self._losses_recorded = False
        self.l2_in_loss: L2Terms = []  # the members' (set with the optimizer, as LabelSmoothingClassifier's)

    def alive(self) -> list[int]:
        return [m for m, failure in enumerate(self.failures) if failure is None]

    def configure_optimizers(self) -> dict[str, Any]:
        first = self.members[0]
        optimization = first.optimization(self.stacked.stacked_parameter)
        self.l2_in_loss = first.l2_in_loss
        return optimization

    def training_step(self, batch: Sequence[tuple[torch.Tensor, torch.Tensor]], batch_idx: int) -> dict[str, Any]:
        inputs, targets = [], []
        for member, state, member_batch in zip(self.members, self.states, batch, strict=True):
            with state:
                x, target = member.mix(*self.preprocess(member_batch, True))
            inputs.append(x)
            targets.append(target)
        logits = self.stacked(torch.stack(inputs))
        losses = []
        for m, (member, state) in enumerate(zip(self.members, self.states, strict=True)):
            with state:
                losses.append(member.training_loss(logits[m], targets[m]))
        member_losses = torch.stack(losses)
        alive = self.alive()
        for m in alive:
            self.members[m].train_loss.update(member_losses[m].detach().expand(len(targets[m])))  # as its run's
        if self.check_every_n_steps is not None:
            self._pending.append((self.global_step, self.current_epoch, member_losses.detach()))
            if len(self._pending) >= self.check_every_n_steps:
                self._check_losses()
        loss = member_losses[alive].sum() if len(alive) < len(self.members) else member_losses.sum()
        if self.l2_in_loss:
            loss = loss + l2_penalty(self.l2_in_loss)
        return {"loss": loss, "member_losses": member_losses.detach()}

    def _check_losses(self) -> None:
        """Members whose loss was not finite at a pending step stop (``failures``), naming their first bad step."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        finite = torch.isfinite(torch.stack([losses for _, _, losses in pending]))
        if bool(finite.all()):  # the one host sync
            return
        for m in self.alive():
            bad = (~finite[:, m]).nonzero()
            if len(bad):
                step, epoch, losses = pending[int(bad[0, 0])]
                self._fail(m, f"the training loss became {float(losses[m])} at global step {step} (epoch {epoch}; "
                           "steps count from 0)")  # fmt: skip

    def _check_weights(self) -> None:
        """Members whose weights are not finite although their losses were (an update overflowed) stop, as their
        runs' guard stops them: once per epoch, before validation writes checkpoints (one host sync)."""
        if self.check_every_n_steps is None or self.global_step == self._weights_checked_at:
            return
        self._check_losses()
        stacked = [
            p.detach().reshape(len(p), -1) for p in self.stacked.stacked_parameters.values() if p.is_floating_point()
        ]
        finite = torch.stack([torch.isfinite(p).all(dim=1) for p in stacked]).all(dim=0).tolist()
        for m in self.alive():
            if not finite[m]:
                self._fail(m, f"the weights became non-finite by global step {self.global_step - 1} (epoch "
                           f"{self.current_epoch}): an update overflowed although the losses were finite")  # fmt: skip
        self._weights_checked_at = self.global_step

    def _fail(self, m: int, what: str) -> None:
        rates = {key: value for key, value in self._epoch_values[m].items() if key.startswith("lr-")}
        self.failed_epoch[m] = {**rates, "epoch": self.current_epoch} if rates else {}
        self.failures[m] = MemberFailed(
            f"{what}. Likely causes: a learning rate too high or a strategy parameter out of its useful range. "
            "The other members of its fused group went on."
        )
        if not self.alive():
            self.trainer.should_stop = True

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx + 1 == self.trainer.num_training_batches:  # the epoch's loss, before its validation
            for member in self.members:
                member.end_criterion_epoch()
            self._record_training_losses()

    def setup(self, stage: str) -> None:
        for member, schedule in zip(self.members, self.schedules, strict=True):
            if schedule is not None:
                schedule.setup(self.trainer, member, stage)

    def on_train_epoch_start(self) -> None:
        rates = learning_rates(self.trainer.optimizers[0]) if self.trainer.optimizers else {}
        self._losses_recorded = False
        for m, (member, schedule) in enumerate(zip(self.members, self.schedules, strict=True)):
            self._epoch_values[m] = dict(rates)
            if schedule is not None:  # as its run's callback, before the module's own epoch start
                schedule.on_train_epoch_start(self.trainer, member)
                applied = torch.tensor(schedule.applied[self.current_epoch])  # the dtype its run's self.log gives it
                self._epoch_values[m][f"schedule/{schedule.parameter}"] = applied.item()
            member.end_criterion_epoch()

    def _record_training_losses(self) -> None:
        self._losses_recorded = True
        self._check_losses()
        losses = []
        for m in self.alive():
            self._epoch_values[m]["train/loss"] = float(self.members[m].train_loss.compute())
            losses.append(self._epoch_values[m]["train/loss"])
        for member in self.members:
            member.train_loss.reset()
        if losses:
            self.log("train/loss", float(np.mean(losses)), prog_bar=True)

    def on_train_epoch_end(self) -> None:
        if not self._losses_recorded:  # data of unknown length
            self._record_training_losses()
        self._check_weights()
        for m in self.alive():  # an epoch without validation: its training values alone
            if "train/loss" in self._epoch_values[m]:
                self._close_epoch(m)

    def _close_epoch(self, m: int) -> None:
        self._epoch_values[m].update(epoch=self.current_epoch, step=self.global_step)
        self.history[m].append(self._epoch_values[m])
        self._epoch_values[m] = {}

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        inputs, target = self.preprocess(batch, False)
        logits = self.stacked(inputs, shared=True)
        for m in self.alive():
            member = self.members[m]
            member.update_validation(member.prediction_logits(logits[m]), target, self.trainer.sanity_checking)

    def on_validation_epoch_start(self) -> None:
        sanity = self.trainer.sanity_checking
        if not sanity and self.trainer.state.fn == TrainerFn.FITTING:
            self._check_weights()
        for m in self.alive():
            self.members[m].start_validation(sanity)
            if not sanity:  # the shuffle-seed draw of the member's own validation loader
                with self.states[m]:
                    torch.empty((), dtype=torch.int64).random_()

    def on_validation_epoch_end(self) -> None:
        sanity = self.trainer.sanity_checking
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        self._check_losses()
        accuracies = []
        for m in self.alive():
            member = self.members[m]
            values = {k: as_logged(v) for k, v in member.end_validation(sanity, fitting, self.current_epoch).items()}
            accuracies.append(values["val/acc"])
            if sanity:
                continue
            self._epoch_values[m].update(values)
            self._close_epoch(m)
            self.stacked.copy_to(m, member.net)
            if self.checkpoints[m] is not None:
                schedule = self.schedules[m]
                callbacks = {schedule.state_key: schedule.state_dict()} if schedule is not None else {}
                self.checkpoints[m].update(member, self.history[m][-1], callbacks)
        if accuracies:
            self.log("val/acc_mean", float(np.mean(accuracies)), prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["fused"] = {
            "states": [state.state_dict() for state in self.states],
            "failures": [str(failure) if failure else None for failure in self.failures],
            "failed_epoch": self.failed_epoch,
            "history": self.history,
            "val_acc_best_epoch": [member.val_acc_best_epoch for member in self.members],
            "checkpoints": [c.state_dict() if c is not None else None for c in self.checkpoints],
            "schedules": [s.state_dict() if s is not None else None for s in self.schedules],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        fused = checkpoint["fused"]
        for state, saved in zip(self.states, fused["states"], strict=True):
            state.load_state_dict(saved)
        self.failures = [MemberFailed(text) if text else None for text in fused["failures"]]
        self.failed_epoch = fused.get("failed_epoch", [{} for _ in self.members])  # a group checkpoint from before
        self.history = fused["history"]
        for member, epoch in zip(self.members, fused["val_acc_best_epoch"], strict=True):
            member.val_acc_best_epoch = epoch
        for checkpoints, saved in zip(self.checkpoints, fused["checkpoints"], strict=True):
            if checkpoints is not None:
                checkpoints.load_state_dict(saved)
        for schedule, saved in zip(self.schedules, fused["schedules"], strict=True):
            if schedule is not None:
                schedule.load_state_dict(saved)

"""Online label smoothing (Zhang et al. 2021, "Delving Deep into Label Smoothing", IEEE TIP 30)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from labelsmooth.smoothing.base import HasTargetDistribution, weighted_log_probs
from labelsmooth.smoothing.parameters import RealParameter


class OnlineLabelSmoothing(HasTargetDistribution):
    """Online label smoothing (Zhang, Jiang, Hou, Wei, Han, Li, Cheng, "Delving Deep into Label Smoothing", IEEE
    Transactions on Image Processing 30, 2021): class-wise soft targets learnt from the model's own predictions
    during the previous epoch.

    ``S ∈ R^{K×K}``: row ``S_c`` is the mean predicted distribution ``p`` over the training samples of class
    ``c`` that the model classified correctly during the previous epoch. The target mixes it with the hard label,

        ``q = α·onehot(y) + (1 - α)·S_y``,  ``loss = -Σ_k q_k log p_k = α·CE + (1 - α)·(-Σ_k S_{y,k} log p_k)``

    (Zhang et al. use ``α = 0.5``). A class with no correctly classified sample in an epoch gets the uniform row
    ``1/K`` (the authors' CIFAR code leaves that row at zero, so such a class trains on ``α·CE`` alone). In epoch 0
    ``S`` is uniform smoothing with ``initial_epsilon`` (``S_c = (1 - ε)·onehot(c) + ε/K``); the default ``ε = 0``
    (one-hot: epoch 0 is plain cross entropy) is a choice made here, where the authors' scripts differ: their
    fine-grained script starts from ``1/K`` (``initial_epsilon=1``), their CIFAR script from zeros (epoch 0: ``α·CE``).

    The statistics are gathered in ``forward`` while training (``p`` detached) and turned into ``S`` by
    ``on_train_epoch_end()``, which the training module calls right after the last training batch of every
    epoch, before validation and the epoch's checkpoint (and again at the start of the next epoch, for data of
    unknown length and checkpoints written before this order: a call with no training sample seen since the last
    one keeps ``S``). Under ``torch.distributed`` the sums
    and counts are first added across processes, so every process holds the same ``S`` and empty statistics when
    the checkpoint is written: a DDP run resumed from it continues exactly. ``S`` is a buffer; the running sums
    and counts are per-process, so they live in the module's extra state (saved in checkpoints, but not a buffer
    that DDP would overwrite with rank 0's copy). Under MixUp a sample counts for the class with the largest
    weight in its mixed target. ``initial_epsilon`` sets up the epoch-0 targets, so it is fixed once built.
    """

    alpha = RealParameter(0.0, 1.0, unsmoothed=1.0)
    initial_epsilon = RealParameter(0.0, 1.0, unsmoothed=0.0, fixed=True)
    soft_targets: torch.Tensor  # a buffer (register_buffer), declared for the type checker

    def __init__(self, num_classes: int, alpha: float = 0.5, initial_epsilon: float = 0.0) -> None:
        super().__init__(num_classes)
        self.alpha = alpha
        self.initial_epsilon = initial_epsilon
        k = self.num_classes
        initial = torch.full((k, k), self.initial_epsilon / k) + (1.0 - self.initial_epsilon) * torch.eye(k)
        self.register_buffer("soft_targets", initial)
        self.prediction_sums = torch.zeros(k, k, dtype=torch.float64)
        self.correct_counts = torch.zeros(k, dtype=torch.float64)
        self.observed_samples = torch.zeros(1, dtype=torch.float64)

    def get_extra_state(self) -> dict[str, torch.Tensor]:
        return {
            "prediction_sums": self.prediction_sums.detach().cpu().clone(),
            "correct_counts": self.correct_counts.cpu().clone(),
            "observed_samples": self.observed_samples.cpu().clone(),
        }

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        device = self.soft_targets.device
        self.prediction_sums = state["prediction_sums"].to(device, torch.float64, copy=True)
        self.correct_counts = state["correct_counts"].to(device, torch.float64, copy=True)
        observed = state.get("observed_samples", self.correct_counts.sum().reshape(1))  # older checkpoints
        self.observed_samples = observed.to(device, torch.float64, copy=True)

    def _statistics_to(self, device: torch.device) -> None:
        if self.prediction_sums.device != device:
            self.prediction_sums = self.prediction_sums.to(device)
            self.correct_counts = self.correct_counts.to(device)
            self.observed_samples = self.observed_samples.to(device)

    @torch.no_grad()
    def observe(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add the predictions of the correctly classified samples to their class's running sum."""
        self._statistics_to(logits.device)
        probs = torch.softmax(logits.detach().float(), dim=-1)
        correct = probs.argmax(dim=-1) == labels
        labels = labels[correct]
        self.prediction_sums.index_add_(0, labels, probs[correct].double())
        self.correct_counts.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))
        self.observed_samples += len(correct)

    @torch.no_grad()
    def on_train_epoch_end(self) -> None:
        """Replace ``S`` by the class-wise mean predictions gathered since the last call (summed over processes
        under ``torch.distributed``: every process must call it) and reset the statistics; where no training
        sample was seen since the last call (on any process), ``S`` stays."""
        self._statistics_to(self.soft_targets.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.prediction_sums)
            dist.all_reduce(self.correct_counts)
            dist.all_reduce(self.observed_samples)
        if self.observed_samples.item() == 0:
            return
        seen = self.correct_counts > 0
        means = self.prediction_sums[seen] / self.correct_counts[seen].unsqueeze(-1)
        self.soft_targets[seen] = (means / means.sum(dim=-1, keepdim=True)).to(self.soft_targets.dtype)
        self.soft_targets[~seen] = 1.0 / self.num_classes
        self.prediction_sums.zero_()
        self.correct_counts.zero_()
        self.observed_samples.zero_()

    def smooth(self, hard_target: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        hard_target = hard_target.float()
        return self.alpha * hard_target + (1.0 - self.alpha) * (hard_target @ self.soft_targets.float())

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.observe(logits, target.long())
        log_probs = torch.log_softmax(logits, dim=-1)
        true_log_prob = log_probs.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
        soft_term = weighted_log_probs(self.soft_targets.float()[target.long()], log_probs).sum(dim=-1)
        return (-self.alpha * true_log_prob - (1.0 - self.alpha) * soft_term).mean()

    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.observe(logits, mixed_target.argmax(dim=-1))
        return self.soft_target_loss(logits, self.smooth(mixed_target))

"""DisturbLabel (Xie et al. 2016, "DisturbLabel: Regularizing CNN on the Loss Layer")."""

from __future__ import annotations

import torch
import torch.distributed as dist

from labelsmooth.errors import ConfigurationError
from labelsmooth.smoothing.base import SmoothingStrategy, class_index_cross_entropy
from labelsmooth.smoothing.parameters import RealParameter


class DisturbLabel(SmoothingStrategy):
    """DisturbLabel (Xie, Wang, Wei, Wang, Tian, CVPR 2016, "DisturbLabel: Regularizing CNN on the Loss Layer").

    Cross entropy against randomly disturbed labels: in training, each label is replaced with probability
    ``α`` by a class drawn uniformly from all K classes (possibly the true one), then ``loss = -log p_ỹ``.

    In expectation the target is ``(1 - α)·onehot(y) + α/K``, uniform smoothing with ``ε = α``, but each sample
    sees a hard, noisy label. Outside training (``strategy.eval()``) it is plain cross entropy. A single
    disturbed label is not a target distribution, so it refuses MixUp / CutMix.

    Reproducibility: the draws of the ``t``-th training batch on process ``rank`` come from a generator seeded with
    ``draw_seed(seed, rank, t)``; ``seed`` is the run seed (``conf/smoothing/disturb_label.yaml``), ``rank`` keeps
    DDP processes from disturbing the same positions, and the batch count ``t`` is saved in checkpoints (the
    module's extra state), so a resumed run continues the same sequence.
    """

    alpha = RealParameter(0.0, 1.0, unsmoothed=0.0)
    options = ("seed",)

    def __init__(self, num_classes: int, alpha: float = 0.1, seed: int = 0) -> None:
        super().__init__(num_classes)
        self.alpha = alpha
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ConfigurationError(f"smoothing.seed={seed!r} must be an integer in [0, 2^63).")
        self.seed = seed
        self.draws = 0

    @staticmethod
    def draw_seed(seed: int, rank: int, draw: int) -> int:
        """The generator seed of draw number ``draw`` on process ``rank`` (distinct pairs give distinct seeds)."""
        return (seed * 6364136223846793005 + rank * 1442695040888963407 + draw) % 2**63

    def get_extra_state(self) -> dict[str, int]:
        return {"draws": self.draws}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.draws = int(state["draws"])

    def disturb(self, target: torch.Tensor) -> torch.Tensor:
        """``target`` with each entry replaced, with probability α, by a uniformly drawn class; a label outside
        [0, K) is kept, so that the loss refuses it whatever the draw (as every strategy's does)."""
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        generator = torch.Generator().manual_seed(self.draw_seed(self.seed, rank, self.draws))
        self.draws += 1
        n = target.shape[0]
        replace = torch.rand(n, generator=generator) < self.alpha
        random_labels = torch.randint(0, self.num_classes, (n,), generator=generator)
        valid = (target >= 0) & (target < self.num_classes)
        return torch.where(replace.to(target.device) & valid, random_labels.to(target.device), target.long())

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.training and self.alpha > 0:
            target = self.disturb(target)
        return class_index_cross_entropy(logits, target)

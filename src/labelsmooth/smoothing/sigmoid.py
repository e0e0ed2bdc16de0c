"""Smoothing for sigmoid heads: K independent binary outputs trained with binary cross entropy or squared error.

Each output ``k`` gets a target ``t_k = off + (on - off)·h_k`` for a hard (one-hot, multi-hot or MixUp-mixed)
target ``h``; the targets do not sum to 1, so they are not a softmax distribution. With ``loss="bce"`` (default) the
loss of a sample is the negative log-likelihood of its K Bernoulli outputs, summed over the outputs and averaged
over the batch:

    loss = mean_n Σ_k BCE(σ(z_k), t_k),  BCE(σ(z), t) = softplus(z) - t·z

computed from reductions of the logits, without a dense (N, K) target. With ``loss="squared_error"`` it is the
squared error of the sigmoid outputs ``o = σ(z)``, the loss of the classic from-scratch networks (Rashid, "Make Your
Own Neural Network", 2016; python-course.eu's numpy MNIST network):

    loss = mean_n ½·Σ_k (t_k - o_k)²,   ∂loss_n/∂z_k = -(t_k - o_k)·o_k·(1 - o_k)

so a plain SGD step on the output layer's weights is those networks' update ``W += lr·((t - o)·o(1 - o))·hᵀ``.
(Their hidden-layer update is not this loss's gradient: they back-propagate the raw error ``t - o``, without the
factor ``o(1 - o)``, through the output weights already updated; no loss of the logits gives that step:
``model.backprop=seed_numpy``, the network's own backward pass, does (``labelsmooth.models.seed_backprop``).)

``strategy(logits, target)`` takes ``logits`` (N, K) and either class indices ``target`` (N,) (one-vs-rest: ``h`` is
one-hot) or an (N, K) multi-hot or soft target ``h`` (multi-label; values in [0, 1], unsmoothed: the strategy
smooths it once, through the same loss as a MixUp / CutMix mixture, ``mixed_target_loss``). Any other shape is
refused with a ``ValueError``.

Predictive distribution (what the validation / test metrics, reliability diagrams and temperature scaling read):
the K one-vs-rest probabilities normalised to sum to 1,

    p_k = σ(z_k) / Σ_j σ(z_j),  i.e.  p = softmax(logsigmoid(z)),

so ``prediction_logits(z) = logsigmoid(z)``. This is a convention, not something the BCE loss defines: the K
Bernoulli outputs of a one-vs-rest head need not sum to 1, and normalising them is the usual way to read such a
head as a multiclass distribution (as in one-vs-rest calibration). ``logsigmoid`` is increasing, so the argmax
(and accuracy) is that of ``z``; computing it in log space keeps the distribution exact when every ``σ(z_k)``
underflows. Temperature scaling then fits ``p_k ∝ σ(z_k)^(1/T)``.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
import torch.nn.functional as F

from labelsmooth.errors import ConfigurationError
from labelsmooth.smoothing.base import TakesMixedTargets, in_float32
from labelsmooth.smoothing.parameters import RealParameter

LOSSES = ("bce", "squared_error")


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ConfigurationError(f"smoothing.loss={loss!r} must be one of {list(LOSSES)}.")
    return loss


class SigmoidTargetStrategy(TakesMixedTargets):
    """Binary cross entropy (``loss="bce"``) or squared error (``loss="squared_error"``) of K sigmoid outputs
    against targets ``off`` (other classes) and ``on`` (true class)."""

    loss: str = "bce"

    @property
    @abstractmethod
    def off_value(self) -> float:
        """The target of the other classes' outputs."""

    @property
    @abstractmethod
    def on_value(self) -> float:
        """The target of the true class's output."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean loss of ``logits`` (N, K) against class indices (N,) or an unsmoothed (N, K) multi-hot / soft
        target (multi-label), smoothed once either way."""
        if logits.dim() == 2 and target.dim() == 1 and target.shape[0] == logits.shape[0]:
            return super().forward(logits, target)
        if logits.dim() == 2 and target.shape == logits.shape:
            return self.mixed_target_loss(logits, target)
        raise ValueError(
            f"{type(self).__name__}: target has shape {tuple(target.shape)} for logits of shape "
            f"{tuple(logits.shape)}; expected logits (N, K) with class indices (N,) or a multi-hot / soft target "
            "(N, K) of the logits' shape."
        )

    def sigmoid_targets(self, target: torch.Tensor) -> torch.Tensor:
        """The (N, K) per-output targets of class indices ``target`` (for inspection; not used by the loss)."""
        return self.smooth(F.one_hot(target.long(), self.num_classes).float())

    def smooth(self, hard_target: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        return self.off_value + (self.on_value - self.off_value) * hard_target.float()

    def prediction_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``logsigmoid(z)`` in float32: its softmax is ``σ(z_k) / Σ_j σ(z_j)``, the normalised one-vs-rest
        probabilities (module docstring)."""
        return in_float32(F.logsigmoid, logits)

    def squared_error(self, logits: torch.Tensor, hard_target: torch.Tensor) -> torch.Tensor:
        """``mean_n ½·Σ_k (t_k - σ(z_k))²`` with ``t = smooth(hard_target)``."""
        return 0.5 * (self.smooth(hard_target) - torch.sigmoid(logits)).square().sum(-1).mean()

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss == "squared_error":
            return self.squared_error(logits, F.one_hot(target.long(), self.num_classes))
        true_logit = logits.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
        per_sample = F.softplus(logits).sum(-1) - self.off_value * logits.sum(-1)
        return (per_sample - (self.on_value - self.off_value) * true_logit).mean()

    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        if self.loss == "squared_error":
            return self.squared_error(logits, mixed_target)
        per_sample = F.softplus(logits).sum(-1) - self.off_value * logits.sum(-1)
        return (per_sample - (self.on_value - self.off_value) * (mixed_target * logits).sum(-1)).mean()


class BinarySmoothing(SigmoidTargetStrategy):
    """Label smoothing for sigmoid / BCE heads (one-vs-rest or multi-label): Szegedy et al.'s uniform smoothing
    ("Rethinking the Inception Architecture for Computer Vision", CVPR 2016, §7) applied to K independent
    Bernoulli outputs.

    ``loss = strategy(logits, target)`` with ``logits`` (N, K) and ``target`` either class indices (N,) (one-vs-rest)
    or an unsmoothed (N, K) multi-hot / soft target in [0, 1] (multi-label, e.g. ``BinarySmoothing(5, 0.1)(logits,
    multi_hot)``); each output ``k`` is trained against ``off + (on - off)·h_k``. Other shapes raise ``ValueError``.

    ``convention="uniform"`` (default, Szegedy's ε spread over K classes): ``on = 1 - ε + ε/K``, ``off = ε/K``.
    ``convention="keras"`` (``tf.keras.losses.BinaryCrossentropy(label_smoothing=ε)``, which smooths each output
    towards 0.5 as a two-class problem): ``on = 1 - ε/2``, ``off = ε/2``.
    """

    CONVENTIONS = ("uniform", "keras")
    epsilon = RealParameter(0.0, 1.0, unsmoothed=0.0)
    options = ("convention", "loss")

    def __init__(self, num_classes: int, epsilon: float = 0.1, convention: str = "uniform", loss: str = "bce") -> None:
        super().__init__(num_classes)
        self.loss = check_loss(loss)
        self.epsilon = epsilon
        if convention not in self.CONVENTIONS:
            raise ConfigurationError(f"smoothing.convention={convention!r} must be one of {list(self.CONVENTIONS)}.")
        self.convention = convention

    @property
    def off_value(self) -> float:
        """``ε/K`` (``uniform``) or ``ε/2`` (``keras``)."""
        return self.epsilon / (2 if self.convention == "keras" else self.num_classes)

    @property
    def on_value(self) -> float:
        """``1 - ε + off``."""
        return 1.0 - self.epsilon + self.off_value


class TargetRange(SigmoidTargetStrategy):
    """Targets squeezed into ``[low, high]``: every sigmoid output gets ``low``, the true class ``high``.

    The from-scratch MNIST network of the seeds (Rashid, "Make Your Own Neural Network", 2016) used
    ``[0.01, 0.99]``, because a sigmoid never reaches 0 or 1, and paired it with inputs scaled to ``[0.01, 1]``
    (``dataset.input_range=[0.01,1] dataset.normalize=none``: normalisation would cancel the scaling, so the data
    sets refuse the pair with any other ``normalize``), and trained it on the squared error (``loss="squared_error"``,
    as ``experiment=seed_mnist_mlp`` does). ``0 <= low < high <= 1``. Targets as for ``BinarySmoothing``: class
    indices (N,) or an unsmoothed (N, K) multi-hot / soft target.
    """

    low = RealParameter(0.0, 1.0, high_inclusive=False, unsmoothed=0.0)
    high = RealParameter("low", 1.0, low_inclusive=False, why="high must exceed low.", unsmoothed=1.0)
    options = ("loss",)

    def __init__(self, num_classes: int, low: float = 0.01, high: float = 0.99, loss: str = "bce") -> None:
        super().__init__(num_classes)
        self.loss = check_loss(loss)
        self.low = low
        self.high = high

    @property
    def off_value(self) -> float:
        return self.low

    @property
    def on_value(self) -> float:
        return self.high

"""Temperature scaling (Guo et al. 2017, "On calibration of modern neural networks") and the scaled metrics.

One scalar ``T > 0`` divides the logits, ``softmax(z / T)``, fitted by minimising the NLL on held-out (validation)
logits. It keeps each argmax, so accuracy is unchanged. torchmetrics / Lightning have no fitter, so it is written
here: a bounded scalar search (scipy) over ``log T`` on the full set of logits. The metrics after scaling are those
of ``labelsmooth.calibration.metrics.ClassificationMetrics`` on ``z / T``, so they are comparable with the logged
ones term by term.

>>> logits, target = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]), torch.tensor([0, 1, 1])
>>> round(fit_temperature(logits, target), 3)  # 2/3 right: softmax(2/T) = 2/3 at T = 2 / log 2
2.885
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
import torch.nn.functional as F

from labelsmooth.calibration.bins import DEFAULT_BINS

SCALED_METRICS = ("nll", "ece", "ace", "brier", "classwise_ece", "smooth_ece", "aurc", "augrc")


TEMPERATURE_BOUNDS = (0.01, 100.0)


def at_bound(temperature: float, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> bool:
    """Whether a fitted ``temperature`` lies at a bound of its search (within 0.1 % in ``log T``): the held-out NLL
    then has no minimum inside them, and metrics scaled by it are not a calibration.

    >>> at_bound(0.01), at_bound(1.7), at_bound(100.0)
    (True, False, True)
    """
    return min(abs(math.log(temperature) - math.log(bound)) for bound in bounds) < 1e-3


def fit_temperature(
    logits: torch.Tensor,
    target: torch.Tensor,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
    tolerance: float = 1e-9,
) -> float:
    """The temperature ``T = argmin_T NLL(softmax(z / T), y)`` (Guo et al. 2017) on held-out logits.

    ``logits`` (N, K) and ``target`` (N,) are the held-out set (the validation split). The NLL is convex in
    ``1/T`` (a log-sum-exp minus a linear term), hence unimodal in ``log T``: a bounded Brent search
    (``scipy.optimize.minimize_scalar``) over ``log T`` in ``bounds`` finds it to ``tolerance``, in float64, so
    the result does not depend on the order of the samples (under DDP they arrive interleaved); a bound where the
    NLL is no higher than there is the result. For N = 0 it is 1 (no scaling), and where every sample's logits
    are equal across classes (softmax is then uniform at any T), with a warning; NaN where the NLL is not finite
    (a NaN or +inf logit, or -inf for the true class; a -inf elsewhere stays -inf at any T and is fitted).
    The labels are checked as the metrics check them (``check_logits``: a label of -100 is refused, not dropped).

    >>> round(fit_temperature(torch.tensor([[2.0, 0.0]] * 50), torch.zeros(50, dtype=torch.long)), 3)  # all right
    0.01
    """
    from scipy.optimize import minimize_scalar

    from labelsmooth.calibration.scores import check_logits

    check_logits(logits.detach().cpu(), target.detach().cpu(), "fit_temperature")  # -100 was dropped, not refused
    if not (0 < bounds[0] < bounds[1] < math.inf):
        raise ValueError(f"fit_temperature: bounds={bounds} must be two temperatures 0 < low < high")
    if logits.shape[0] == 0:
        return 1.0
    with torch.inference_mode(False), torch.no_grad():
        logits = logits.detach().cpu().double()
        target = target.detach().cpu().long()

        def nll(log_t: float) -> float:
            return float(F.cross_entropy(logits / math.exp(log_t), target))

        if not math.isfinite(nll(0.0)):  # a diverged model: no temperature fits, and none is claimed
            return math.nan
        if bool((logits == logits[:, :1]).all()):
            warnings.warn(
                "fit_temperature: every held-out sample has the same logit for every class (a model that predicts "
                "the uniform distribution): the NLL does not depend on T, so T = 1",
                stacklevel=2,
            )
            return 1.0

        log_bounds = (math.log(bounds[0]), math.log(bounds[1]))
        result = minimize_scalar(nll, bounds=log_bounds, method="bounded", options={"xatol": tolerance})
        # Where every held-out prediction is right the NLL falls toward the lower bound, and reaches 0 in float64
        # on a stretch above it, where the search may stop: a bound no worse than its result is the minimum.
        log_t = min((*log_bounds, float(result.x)), key=nll)
    temperature = float(math.exp(log_t))
    if at_bound(temperature, bounds):
        cause = (
            "every held-out prediction right, or logits that separate the classes: the sharper the better"
            if temperature < math.sqrt(bounds[0] * bounds[1])
            else f"logits so large that even divided by {bounds[1]:.3g} they are overconfident in wrong predictions, "
            "as after a diverged training: the softer the better"
        )
        warnings.warn(
            f"fit_temperature: the held-out NLL is lowest at the bound T = {temperature:.3g} of {bounds} ({cause}): "
            "no temperature minimises it, and metrics scaled by this one (test/*_ts) are not a calibration",
            stacklevel=2,
        )
    return temperature


def temperature_scaled_metrics(
    logits: torch.Tensor, target: torch.Tensor, temperature: float, n_bins: int = DEFAULT_BINS
) -> dict[str, float]:
    """``SCALED_METRICS`` of ``softmax(logits / temperature)``: NLL, ECE, adaptive ECE, Brier score, class-wise
    ECE, smooth ECE, AURC and AUGRC, by ``ClassificationMetrics``. AURC and AUGRC change too for K > 2: scaling
    keeps each prediction but not the ranking of the confidences across samples (``labelsmooth.calibration.
    selective``)."""
    from labelsmooth.calibration.metrics import ClassificationMetrics
    from labelsmooth.calibration.scores import check_logits

    check_logits(logits, target, "temperature_scaled_metrics")
    if isinstance(temperature, torch.Tensor) and temperature.numel() == 1:
        temperature = float(temperature)
    number = isinstance(temperature, numbers.Real) and not isinstance(temperature, bool)
    if number and math.isnan(temperature):  # fit_temperature's on non-finite logits
        return dict.fromkeys(SCALED_METRICS, math.nan)
    if not number or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    scaled = logits.detach().float().cpu() / temperature
    # The logits are a whole split already (gathered over DDP processes): a second gather would count each twice.
    metrics = ClassificationMetrics(scaled.shape[-1], n_bins=n_bins, sync_on_compute=False)
    metrics.update(scaled, target.detach().long().cpu())
    values = metrics.compute()
    return {name: float(values[name]) for name in SCALED_METRICS}

"""Post-hoc metrics: what a held-out (validation) set fits, applied to the test set.

``post_hoc_metrics`` gives, from validation and test logits, the temperature fitted by NLL on the validation logits
(Guo et al. 2017, ``fit_temperature``) with the test metrics at that temperature (``test/<m>_ts``), and the
selective-classification metrics after logit normalisation with the p chosen on the validation logits (Xia et al.
2025, ``labelsmooth.calibration.selective.lognorm_confidence``). ``refinement_nll`` is the validation NLL after
temperature scaling, the refinement proxy of Berta et al. (2025, "Rethinking early stopping: refine, then
calibrate") for selecting a checkpoint.
"""

from __future__ import annotations

import torch

from labelsmooth.calibration.selective import augrc, aurc, choose_lognorm_p, lognorm_confidence
from labelsmooth.calibration.temperature import at_bound, fit_temperature, temperature_scaled_metrics


def post_hoc_metrics(
    val_logits: torch.Tensor,
    val_target: torch.Tensor,
    test_logits: torch.Tensor,
    test_target: torch.Tensor,
    n_bins: int,
) -> dict[str, float]:
    """``temperature``, ``temperature_at_bound`` (1.0 when it lies at a bound of its search: ``at_bound``, the
    ``_ts`` metrics are then no calibration; else 0.0) and ``test/<m>_ts`` (each of ``SCALED_METRICS`` over ``n_bins``
    bins), ``lognorm_p`` (the p
    of the grid with the lowest AURC on the validation logits; ``inf`` for the max norm) and ``test/aurc_lognorm`` /
    ``test/augrc_lognorm`` of the test logits with it (the prediction stays the raw logits' argmax)."""
    temperature = fit_temperature(val_logits, val_target)
    scaled = temperature_scaled_metrics(test_logits, test_target, temperature, n_bins)
    val_z, test_z = (z.detach().cpu().double().numpy() for z in (val_logits, test_logits))
    p, _ = choose_lognorm_p(val_z, val_target.detach().cpu().numpy())
    confidence = lognorm_confidence(test_z, p)
    correct = test_z.argmax(axis=1) == test_target.detach().cpu().numpy()
    return {
        "temperature": temperature,
        "temperature_at_bound": float(at_bound(temperature)),
        **{f"test/{name}_ts": value for name, value in scaled.items()},
        "lognorm_p": p,
        "test/aurc_lognorm": aurc(confidence, correct),
        "test/augrc_lognorm": augrc(confidence, correct),
    }


def refinement_nll(logits: torch.Tensor, target: torch.Tensor) -> float:
    """The NLL of ``logits / T``, ``T`` fitted by NLL on these logits (``fit_temperature``), in float64."""
    temperature = fit_temperature(logits, target)
    with torch.inference_mode(False), torch.no_grad():
        nll = torch.nn.functional.cross_entropy(logits.detach().double() / temperature, target.detach().long())
    return float(nll)

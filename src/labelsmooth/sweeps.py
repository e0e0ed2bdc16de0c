"""Resuming a sweep: skip the jobs whose ``metrics.json`` already says ``completed``.

Re-running a multirun with ``resume_sweep=true`` and the old sweep directory
(``hydra.sweep.dir=outputs/multirun/<date>/<time>``) gives every job the directory it had before (Hydra numbers
the jobs of the same grid the same way). A job whose ``metrics.json`` there says ``completed`` *for the same
seed and strategy parameters* returns its recorded metric instead of training again; failed, interrupted or
missing jobs run again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from labelsmooth.run_outputs import METRICS_FILE

log = logging.getLogger(__name__)


def _recorded_parameters(cfg: DictConfig) -> dict[str, Any]:
    smoothing = OmegaConf.to_container(cfg.smoothing, resolve=True) if cfg.get("smoothing") else {}
    parameters = {
        f"smoothing.{k}": v for k, v in smoothing.items() if not k.startswith("_") and not isinstance(v, dict)
    }
    return {"seed": cfg.get("seed"), **parameters}


def completed_job(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any] | None:
    """The ``metrics.json`` of ``output_dir`` if it records a completed run of this seed and these strategy
    parameters; None (run the job) otherwise."""
    path = Path(output_dir) / METRICS_FILE
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or metrics.get("status") != "completed":
        return None
    expected = _recorded_parameters(cfg)
    different = {k: (metrics.get(k), v) for k, v in expected.items() if k in metrics and metrics.get(k) != v}
    if different:
        log.warning("resume_sweep: %s holds a different job (%s); running this one again", path, different)
        return None
    log.info("resume_sweep: %s says completed; skipping this job", path)
    return metrics


def optimized_value(metrics: dict[str, Any], name: str | None) -> float | None:
    """The value of the optimized metric (``val/acc_best``) for the sweeper, None when absent."""
    value = metrics.get(name) if name else None
    return float(value) if isinstance(value, (int, float)) else None

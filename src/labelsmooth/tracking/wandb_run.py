"""W&B without surprises: offline unless asked, never hanging without network or login, no secrets logged."""

from __future__ import annotations

import logging
import netrc
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

SECRET_KEY_PATTERN = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential)", re.IGNORECASE)
REDACTED = "<redacted>"


def wants_online(offline_setting: bool) -> bool:
    """Online when the config says ``offline: false`` or the environment says ``WANDB_MODE=online``."""
    return (not offline_setting) or os.environ.get("WANDB_MODE", "").lower() in {"online", "run"}


def why_wandb_cannot_go_online(timeout: float = 3.0) -> str | None:
    """A reason W&B online mode would fail or hang here (no API key, no route to the server), or None."""
    base_url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    parsed = urlparse(base_url)
    host = parsed.hostname or "api.wandb.ai"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        try:
            has_key = netrc.netrc().authenticators(host) is not None
        except (FileNotFoundError, netrc.NetrcParseError, OSError):
            has_key = False
    if not has_key:
        return f"no W&B API key (set WANDB_API_KEY or run `wandb login`) for {host}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        return f"cannot reach {host}:{port} ({error.__class__.__name__}: {error})"
    return None


def sweep_group_name(sweep_dir: str | Path) -> str:
    """The W&B group shared by the jobs of one multirun: ``sweep-<date>-<time>`` from its sweep directory
    (``outputs/multirun/<date>/<time>``), so that the report finds the runs of a sweep it reads."""
    return "sweep-" + "-".join(Path(sweep_dir).parts[-2:])


def remove_anonymous_setting(logger: Any) -> None:
    """Drop the ``anonymous`` argument that Lightning's ``WandbLogger`` always hands to ``wandb.init``: W&B >= 0.23
    ignores it and prints a deprecation warning for it on every run."""
    init_arguments = getattr(logger, "_wandb_init", None)
    if isinstance(init_arguments, dict) and init_arguments.get("anonymous") is None:
        init_arguments.pop("anonymous", None)


def secret_values() -> set[str]:
    """Values of environment variables whose names look like secrets (e.g. ``WANDB_API_KEY``)."""
    return {v for k, v in os.environ.items() if SECRET_KEY_PATTERN.search(k) and len(v) >= 8}


def redact_secrets(value: Any, secrets: set[str] | None = None) -> Any:
    """A copy of a config tree with secret-looking keys and any secret environment value replaced."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(value, dict):
        return {
            k: (REDACTED if SECRET_KEY_PATTERN.search(str(k)) and v not in (None, "") else redact_secrets(v, secrets))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact_secrets(v, secrets) for v in value)
    if isinstance(value, str):
        key, equals, _ = value.partition("=")
        if equals and SECRET_KEY_PATTERN.search(key) and " " not in key:  # a command-line override of a secret
            return f"{key}={REDACTED}"
        for secret in secrets:
            value = value.replace(secret, REDACTED)
    return value


def is_wandb(logger_or_config: Any) -> bool:
    """Whether a logger, or a logger config node (``_target_``), is Lightning's ``WandbLogger``."""
    if logger_or_config is None or logger_or_config is False:
        return False
    if isinstance(logger_or_config, Mapping):
        return str(logger_or_config.get("_target_", "")).endswith("WandbLogger")
    from pytorch_lightning.loggers import WandbLogger  # loaded with Lightning; wandb itself is imported on use

    return isinstance(logger_or_config, WandbLogger)


def finish_wandb(logger: Any, exit_code: int, summary: dict[str, Any] | None = None) -> None:
    """End this job's W&B run (if one was started) so the next job of the same process gets its own; a failed
    run's W&B summary gets the ``status``, ``error_type`` and ``error`` of its ``metrics.json``."""
    if logger is None or not is_wandb(logger):
        return
    import wandb

    if wandb.run is not None:
        if exit_code != 0 and summary is not None:
            wandb.run.summary.update({k: summary[k] for k in ("status", "error_type", "error") if k in summary})
        if wandb.run.settings._offline:
            run_dir = Path(wandb.run.dir).parent
            print(f"W&B offline run saved; upload it with: wandb sync {run_dir}")
        wandb.finish(exit_code=exit_code)


# Logged once per epoch (Lightning adds ``epoch`` to them): plotted against ``epoch``. The others (the final test,
# step-level values) keep Lightning's ``trainer/global_step``.
EPOCH_METRICS = ("train/*", "val/*", "lr-*", "schedule/*")


def best_value_summaries() -> dict[str, str]:
    """The W&B summary of each validation metric that ranks runs: ``max`` for accuracy (and ``val/acc_best``),
    ``min`` for the losses and calibration errors (``ClassificationMetrics``; ``val/nll_ts`` too), so the run table
    shows each run's best values."""
    from labelsmooth.calibration.metrics import ClassificationMetrics as Metrics

    summaries = {f"val/{name}": "max" for name in Metrics.BEST_IS_HIGHEST}
    summaries["val/acc_best"] = "max"
    lowest = [name for name in Metrics.NAMES if name not in (*Metrics.BEST_IS_HIGHEST, *Metrics.DESCRIPTIVE)]
    summaries.update({f"val/{name}": "min" for name in (*lowest, "nll_ts")})
    return summaries


def define_metrics(run: Any) -> None:
    """The run's metric definitions: epoch-level metrics against ``epoch``, best values as summaries."""
    run.define_metric("epoch")
    for pattern in EPOCH_METRICS:
        run.define_metric(pattern, step_metric="epoch")
    for name, summary in best_value_summaries().items():
        run.define_metric(name, step_metric="epoch", summary=summary)


def single_run_group(dataset: str, model: str) -> str:
    """The W&B group of a run outside a sweep: its data set and model (``digits-resnet_v1``)."""
    return f"{dataset}-{model}"

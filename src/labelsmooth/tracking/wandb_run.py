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

from labelsmooth.runs.context import RunContext

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
    return type(logger_or_config).__name__ == "WandbLogger"


def instantiate_logger(cfg: Any, context: RunContext, resume_wandb_id: str | None = None):
    import hydra

    """The run's logger (``cfg.logger``), False for none. A W&B logger is offline unless online is asked for and
    possible, continues ``resume_wandb_id``, joins its sweep's group and is named by the job's overrides."""
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return False
    logger_cfg = cfg.logger
    if is_wandb(logger_cfg):
        if os.environ.get("WANDB_MODE", "").lower() == "disabled":
            log.info("WANDB_MODE=disabled: no W&B run (metrics.json, checkpoints and plots are written as usual)")
            return False
        if cfg.get("paths") and cfg.paths.get("log_dir"):  # W&B's staged table files next to the runs, not in ~
            os.environ.setdefault("WANDB_DATA_DIR", str(Path(cfg.paths.log_dir) / ".wandb-data"))
        extra: dict[str, Any] = {"offline": True}
        if wants_online(bool(logger_cfg.get("offline", True))):
            reason = why_wandb_cannot_go_online()
            if reason is None:
                extra["offline"] = False
            else:
                log.warning("W&B online mode is not possible (%s); logging offline instead.", reason)
                os.environ["WANDB_MODE"] = "offline"
        if resume_wandb_id and logger_cfg.get("id") is None:
            extra["id"] = resume_wandb_id
        if context.multirun and logger_cfg.get("group") is None:
            extra["group"] = sweep_group_name(context.sweep_dir or "sweep")
        if logger_cfg.get("name") is None and context.override_dirname:
            extra["name"] = ",".join(redact_secrets(context.override_dirname.split(",")))
        logger = hydra.utils.instantiate(logger_cfg, **extra)
        remove_anonymous_setting(logger)
        return logger
    return hydra.utils.instantiate(logger_cfg)


CHOSEN_GROUPS = (
    "dataset",
    "model",
    "smoothing",
    "strategy_schedule",
    "augment",
    "experiment",
    "hparams_search",
    "sweep",
)


def wandb_config(cfg: Any, choices: dict[str, str]) -> dict[str, Any]:
    """The logged run config, secrets redacted: the resolved Hydra config, plus ``choices``, the config-group names
    (``dataset: cifar10``, ``smoothing: gamma``, ...) that the config itself only holds as class paths: what W&B
    filters by."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(cfg, resolve=True)
    config["choices"] = {group: choices[group] for group in CHOSEN_GROUPS if choices.get(group)}
    return redact_secrets(config)


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


def failed_job_wandb_run(cfg: Any, context: RunContext) -> Any:
    """A W&B run for a sweep job that failed before its logger was built (a bad parameter, missing data), so the
    sweep's W&B group shows every job, this one as failed; None without a W&B logger or when it cannot start."""

    if not is_wandb(cfg.get("logger")):
        return None
    try:
        logger = instantiate_logger(cfg, context)
        if logger:
            logger.log_hyperparams(wandb_config(cfg, context.choices))
        return logger or None
    except Exception as error:  # the job's own error is the one to report
        log.warning("No W&B run for this failed job: %s", error)
        return None

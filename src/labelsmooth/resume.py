"""Finding the run a ``resume=true`` continues: its directory, last checkpoint and W&B run id.

Used by Hydra's ``hydra.run.dir`` (through the ``ls_run_dir`` resolver of ``labelsmooth.resolvers``) so a
resumed run writes into the directory of the interrupted one, and by the training entry point.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
IGNORED_OVERRIDE_KEYS = {"resume", "ckpt_path", "logger", "trainer.enable_progress_bar"}
# Keys that say where outputs go or how they are shown, not what is trained.
IGNORED_OVERRIDE_PREFIXES = ("paths.", "logger.")


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def comparable_overrides(overrides: Iterable[str]) -> frozenset[str]:
    """The overrides that define a run, less those that only say how to start it (``resume``, ``ckpt_path``),
    where its outputs go (``paths.*``) or how they are shown (``logger``, the progress bar)."""
    return frozenset(
        o
        for o in overrides
        if override_key(o) not in IGNORED_OVERRIDE_KEYS and not override_key(o).startswith(IGNORED_OVERRIDE_PREFIXES)
    )


def find_run_to_resume(
    runs_root: str | Path, overrides: Iterable[str], with_checkpoint: bool = True, exclude: Path | None = None
) -> Path | None:
    """The latest run under ``runs_root/<date>/<time>/`` with the same overrides and a ``last.ckpt``; with
    ``with_checkpoint=False`` the latest killed before its first checkpoint (neither ``last.ckpt`` nor
    ``metrics.json``), to say so. ``exclude`` (this run's own new directory) is never returned."""
    wanted = comparable_overrides(overrides)
    candidates = sorted(Path(runs_root).glob("*/*/.hydra/overrides.yaml"), reverse=True)
    for overrides_file in candidates:
        run_dir = overrides_file.parent.parent
        has_checkpoint = (run_dir / LAST_CHECKPOINT).is_file()
        killed_early = not has_checkpoint and not (run_dir / "metrics.json").exists()
        if run_dir == exclude or not (has_checkpoint if with_checkpoint else killed_early):
            continue
        try:
            previous = yaml.safe_load(overrides_file.read_text()) or []
        except (OSError, yaml.YAMLError):
            continue
        if comparable_overrides(previous) == wanted:
            return run_dir
    return None


def resolve_run_dir(runs_root: str, fresh_dir: str, resume: object, overrides: Iterable[str] | None) -> str:
    """``hydra.run.dir``: a fresh ``<runs_root>/<date>/<time>``, or the run being resumed.

    ``resume=true`` picks the latest earlier run with the same overrides that has a last checkpoint (if there
    is none the fresh directory is returned and training stops with an error that says so);
    ``resume=<directory>`` names the run explicitly.
    """
    fresh = str(Path(runs_root) / fresh_dir)
    if resume in (None, False) or str(resume).lower() in {"false", "none", "null", ""}:
        return fresh
    if str(resume).lower() != "true":
        return str(resume)
    found = find_run_to_resume(runs_root, overrides or [])
    return str(found) if found is not None else fresh


def previous_wandb_run_id(run_dir: str | Path) -> str | None:
    """The id of the latest W&B run written under ``run_dir/wandb`` (offline or online), if any."""
    runs = sorted((Path(run_dir) / "wandb").glob("*run-*-*"), key=lambda p: p.name.split("-", 1)[1])
    runs = [p for p in runs if p.is_dir() and not p.is_symlink()]
    return runs[-1].name.rsplit("-", 1)[1] if runs else None

"""Finding a run's checkpoints: the error of a checkpoint that cannot be evaluated as asked, and where the
checkpoints are when a path is wrong (``labelsmooth.cli.saved`` reads the run a checkpoint belongs to)."""

from __future__ import annotations

import os
from pathlib import Path

from labelsmooth.errors import ConfigurationError


class EvaluationError(ConfigurationError):
    """A checkpoint that cannot be evaluated (or loaded) as asked, with what to do about it."""


EXAMPLE_CKPT = "outputs/runs/<date>/<time>/checkpoints/best-epoch012.ckpt"
WHERE_CHECKPOINTS_ARE = (
    "Checkpoints are under outputs/runs/<date>/<time>/checkpoints/ (sweeps: outputs/multirun/<date>/<time>/<job>/"
    "checkpoints/)."
)


def _newest_checkpoint(log_dir: str | Path | None) -> Path | None:
    """The most recently written ``best-*.ckpt`` of the runs under ``log_dir`` (a suggestion for a wrong path)."""
    if not log_dir or not Path(log_dir).is_dir():
        return None
    root = Path(log_dir)
    found = [*root.glob("runs/*/*/checkpoints/best-*.ckpt"), *root.glob("multirun/*/*/*/checkpoints/best-*.ckpt")]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (as a user would type it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def dangling_link_message(key: str, path: Path) -> str:
    """A checkpoint that is a symbolic link to a file that is not there (``last.ckpt`` links to the best checkpoint
    when they coincide; ``cp -a``, ``rsync -a`` and ``tar`` copy the link alone)."""
    return (
        f"{key}={path} is a link to {os.readlink(path)}, which is not there (a link copied without its file): "
        f"copy the file itself (cp -L, rsync -L) or give {key}= the file it links to"
    )


def missing_checkpoint_message(ckpt_path: str | Path, log_dir: str | Path | None = None) -> str:
    """Why ``ckpt_path`` is not a checkpoint file, and where the checkpoints are."""
    path = Path(ckpt_path)
    if path.is_symlink() and not path.exists():
        return dangling_link_message("ckpt_path", path)
    if path.is_dir():
        inside = sorted([*path.glob("*.ckpt"), *path.glob("checkpoints/*.ckpt")])
        if inside:
            return f"ckpt_path={ckpt_path} is a directory: give a .ckpt file, e.g. ckpt_path={_shown(inside[0])}"
        return f"ckpt_path={ckpt_path} is a directory with no .ckpt file. {WHERE_CHECKPOINTS_ARE}"
    newest = _newest_checkpoint(log_dir)
    suggestion = f" The newest: ckpt_path={_shown(newest)}" if newest else ""
    return f"ckpt_path={ckpt_path}: no such checkpoint file. {WHERE_CHECKPOINTS_ARE}{suggestion}"

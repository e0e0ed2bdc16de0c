"""The run-outputs contract: ``metrics.json``, a flat JSON object written atomically at the end of a run; and
the atomic writes every output file goes through (a temporary file in the same directory, renamed over the
target), so a crash never leaves a half-written file that a later step trusts."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from labelsmooth.errors import DiskFullError, is_disk_full
from labelsmooth.runs.layout import RunDirectory


def new_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` gives a new file (0o666 less the umask), for the temporary
    files, which ``mkstemp`` creates 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """``write(temporary_path)`` into the directory of ``path``, fsync it, then rename it over ``path``: atomic on
    any file system, since the temporary file is on the same one. On any error the temporary file is removed and
    ``path`` keeps its old contents; a full file system (ENOSPC, EDQUOT) is a ``DiskFullError`` naming ``path`` and
    the free space there."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        fsync_file(tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if is_disk_full(error):
            raise DiskFullError(path, error) from error
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` atomically to ``path`` (``write_atomic``)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    return write_atomic(path, write)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush ``path``'s data to the storage device (a rename after it then never exposes a file still in cache)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically to ``path`` (``write_atomic``)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)

    return write_atomic(path, write)


INTERRUPTED_WRITE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # write_atomic's: mkstemp's 8 random characters


def remove_interrupted_writes(run_dir: str | os.PathLike) -> dict[Path, int]:
    """Remove the temporary files that writes into the run's directory and its ``checkpoints/`` left when their
    process was killed (``.<name>.<random>.tmp`` of ``write_atomic``, ``<checkpoint>.tmp`` of a checkpoint or its
    link); returns their sizes. Only for a run directory this process holds (its lock): no write is under way.
    """
    run = RunDirectory(run_dir)
    removed = {}
    for directory in (run.root, run.checkpoints):
        for path in sorted(directory.glob("*.tmp")) if directory.is_dir() else ():
            if INTERRUPTED_WRITE.fullmatch(path.name) or path.name.endswith(".ckpt.tmp"):
                removed[path] = path.lstat().st_size
                path.unlink(missing_ok=True)
    return removed


def save_figure_atomic(figure: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    """A matplotlib ``figure`` saved atomically as a PNG at ``path``."""
    return write_atomic(path, lambda tmp: figure.savefig(tmp, dpi=dpi, format="png"))


def _json_value(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_metrics_json(output_dir: str | os.PathLike, metrics: Mapping[str, Any]) -> Path:
    """Write the flat ``metrics.json`` of a run (keys sorted, tensors turned into numbers)."""
    flat = {key: _json_value(value) for key, value in metrics.items()}
    return write_text_atomic(RunDirectory(output_dir).metrics_json, json.dumps(flat, indent=2, sort_keys=True) + "\n")


def read_metrics_json(run_dir: str | os.PathLike) -> dict[str, Any]:
    with open(RunDirectory(run_dir).metrics_json, encoding="utf-8") as handle:
        return json.load(handle)


def recorded_metrics(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``metrics.json`` of ``run_dir`` as a dict; None when there is none or it is not a readable object."""
    try:
        metrics = read_metrics_json(run_dir)
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def checkpoint_run_directory(
    ckpt_path: str | os.PathLike, names: Mapping[str, str] | None = None, seed: int | None = None
) -> Path | None:
    """``<run>`` of a checkpoint at ``<run>/checkpoints/<file>.ckpt`` when ``<run>`` is a run (it has a
    ``metrics.json`` or ``.hydra/config.yaml``) and, as far as its ``metrics.json`` says, the run that the
    checkpoint's specification describes (``names``: data set, model, strategy; ``seed``); None otherwise: a
    checkpoint copied elsewhere, or into another run's ``checkpoints/``."""
    path = Path(ckpt_path).resolve()
    run = RunDirectory.of_checkpoint(path)
    if path.parent.name != "checkpoints" or not (run.metrics_json.is_file() or run.config_yaml.is_file()):
        return None
    recorded = recorded_metrics(run.root) or {}
    described = {**(names or {}), **({"seed": seed} if seed is not None else {})}
    if any(key in recorded and recorded[key] != value for key, value in described.items()):
        return None
    return run.root

"""The run-outputs contract: ``metrics.json``, a flat JSON object written atomically at the end of a run; and
the atomic writes every output file goes through (a temporary file in the same directory, renamed over the
target), so a crash never leaves a half-written file that a later step trusts."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from labelsmooth.runs.layout import RunDirectory


def new_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` gives a new file (0o666 less the umask), for the temporary
    files, which ``mkstemp`` creates 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """``write(temporary_path)`` into the directory of ``path``, then rename the result over ``path``; on any
    error the temporary file is removed and ``path`` keeps its old contents."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, fsynced) atomically to ``path``."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    return write_atomic(path, write)


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

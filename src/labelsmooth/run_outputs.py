"""The run-outputs contract: ``metrics.json``, a flat JSON object written atomically at the end of a run."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file in the same directory, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_value(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_metrics_json(output_dir: str | os.PathLike, metrics: Mapping[str, Any]) -> Path:
    """Write the flat ``metrics.json`` of a run (keys sorted, tensors turned into numbers)."""
    flat = {key: _json_value(value) for key, value in metrics.items()}
    return write_text_atomic(Path(output_dir) / METRICS_FILE, json.dumps(flat, indent=2, sort_keys=True) + "\n")


def read_metrics_json(run_dir: str | os.PathLike) -> dict[str, Any]:
    with open(Path(run_dir) / METRICS_FILE, encoding="utf-8") as handle:
        return json.load(handle)

"""Every benchmark runs to the end, in its smallest form (``--size smoke``: tiny sizes, one repetition; its
numbers mean nothing and nothing here times anything), and its section of RESULTS.md renders from its results.
A change that breaks ``make bench`` fails here. One test per benchmark, so that they run side by side under
pytest-xdist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from run_all import BENCHMARKS  # noqa: E402


def test_the_suite_runs_every_benchmark() -> None:
    assert set(BENCHMARKS) == {"pipeline", "loss", "data", "sweep", "startup", "fused"}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_each_benchmark_runs_in_its_smoke_size(tmp_path: Path, name: str) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    done = subprocess.run(
        [sys.executable, "bench/run_all.py", "--size", "smoke", "--only", name, "--results-dir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    logs = "".join(f"\n--- {log.name}\n{log.read_text()[-2000:]}" for log in sorted(tmp_path.glob("logs/*.log")))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + logs
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert result["size"] == "smoke" and result["rows"]
    assert not [row for row in result["rows"] if "error" in row]
    results_md = (tmp_path / "RESULTS.md").read_text()
    assert f"## {result['title']}" in results_md and "--size smoke" in results_md
    assert not (REPO / "bench" / "results" / f"{name}.json").read_text().count('"smoke"')  # bench/ untouched

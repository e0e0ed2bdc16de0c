"""Every benchmark runs to the end, in its smallest form (``--size smoke``: tiny sizes, one repetition; its
numbers mean nothing and nothing here times anything), and RESULTS.md renders from its results. A change that
breaks ``make bench`` fails here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = ("pipeline", "loss", "data", "sweep", "startup", "fused")


def test_every_benchmark_runs_in_its_smoke_size(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    done = subprocess.run(
        [sys.executable, "bench/run_all.py", "--size", "smoke", "--results-dir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    logs = "".join(f"\n--- {log.name}\n{log.read_text()[-2000:]}" for log in sorted(tmp_path.glob("logs/*.log")))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + logs
    suite = json.loads((tmp_path / "run_all.json").read_text())
    assert suite["failed"] == [] and suite["size"] == "smoke"
    for name in BENCHMARKS:
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["size"] == "smoke" and result["rows"], name
        assert not [row for row in result["rows"] if "error" in row], name
    results_md = (tmp_path / "RESULTS.md").read_text()
    assert "not run" not in results_md
    assert "## Fused sweeps" in results_md and "--size smoke" in results_md
    assert not (REPO / "bench" / "results" / "run_all.json").read_text().count('"smoke"')  # bench/ untouched

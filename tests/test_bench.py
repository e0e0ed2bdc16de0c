"""Every benchmark runs to the end, in its smallest form (``--size smoke``: tiny sizes, one repetition; its
numbers mean nothing and nothing here times anything), and its section of RESULTS.md renders from its results.
A change that breaks ``make bench`` fails here. One test per benchmark, so that they run side by side under
pytest-xdist."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from run_all import BENCHMARKS, render, run_benchmark  # noqa: E402
from run_all import main as run_all_main  # noqa: E402


def test_the_suite_runs_every_benchmark() -> None:
    assert set(BENCHMARKS) == {"pipeline", "loss", "data", "sweep", "startup", "fused"}


# Run here, as ``python bench/<name>.py --size smoke`` would run them (``runpy``, as ``__main__``): these time code
# in their own process, and a fresh interpreter would add about 5 s of imports to each. The others start their
# own ``train.py`` processes, and go through ``run_all.run_benchmark`` as ``make bench`` does.
IN_THIS_PROCESS = {"loss", "data", "pipeline"}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_each_benchmark_runs_in_its_smoke_size(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    if name in IN_THIS_PROCESS:
        import torch

        monkeypatch.setattr(sys, "argv", [BENCHMARKS[name], "--size", "smoke", "--results-dir", str(tmp_path)])
        threads = torch.get_num_threads()
        try:
            runpy.run_path(str(REPO / "bench" / BENCHMARKS[name]), run_name="__main__")
        finally:
            torch.set_num_threads(threads)
    else:
        code, _ = run_benchmark(name, "smoke", tmp_path)
        logs = "".join(f"\n--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted(tmp_path.glob("logs/*.log")))
        assert code == 0, logs
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert result["size"] == "smoke" and result["rows"]
    assert ("took_s" in result) == (name not in IN_THIS_PROCESS)  # run_benchmark keeps the duration
    assert not [row for row in result["rows"] if "error" in row]
    results_md = render(tmp_path)
    assert f"## {result['title']}" in results_md and "--size smoke" in results_md
    assert not (REPO / "bench" / "results" / f"{name}.json").read_text().count('"smoke"')  # bench/ untouched


def test_run_all_renders_results_md_from_the_results_directory(tmp_path: Path, monkeypatch, capsys) -> None:
    """``run_all.py --report``: RESULTS.md from the JSON results there are, each missing benchmark "not run"."""
    (tmp_path / "loss.json").write_text((REPO / "bench" / "results" / "loss.json").read_text())
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--report", "--results-dir", str(tmp_path)])
    run_all_main()
    results_md = (tmp_path / "RESULTS.md").read_text()
    assert results_md == capsys.readouterr().out.split("\ntotal ")[0]
    title = json.loads((tmp_path / "loss.json").read_text())["title"]
    assert f"## {title}" in results_md
    assert all(f"## {name}\n\nnot run" in results_md for name in BENCHMARKS if name != "loss")

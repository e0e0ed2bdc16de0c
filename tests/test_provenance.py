"""Every run records the code and the device that computed its numbers (``code.*``, ``device``), and the report
says which code computed the jobs it pools, with a warning when that is more than one version."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

from labelsmooth.report.cli import main
from labelsmooth.runs.layout import RunDirectory
from labelsmooth.runs.provenance import code_record, git_state
from tests.conftest import REPO_ROOT, TrainedRun
from tests.report_helpers import make_report
from tests.test_report import completed, read_csv, write_job


def git(directory: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, check=True).stdout


def test_every_run_records_the_code_and_the_device_that_computed_it(trained_run: TrainedRun) -> None:
    metrics = json.loads(RunDirectory(trained_run.directory).metrics_json.read_text())
    assert metrics["device"] == "cpu"
    assert {k: v for k, v in metrics.items() if k.startswith("code.")} == code_record()
    assert metrics["code.labelsmooth"] == metadata.version("labelsmooth")
    assert metrics["code.torch"] == metadata.version("torch") and metrics["code.timm"] == metadata.version("timm")
    assert metrics["code.git_commit"] == git(REPO_ROOT, "rev-parse", "HEAD").strip()  # the suite runs a checkout
    assert isinstance(metrics["code.git_dirty"], bool)


def test_the_git_state_of_a_checkout_of_an_installed_copy_and_without_git(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    package = checkout / "src" / "package"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    git(checkout, "init", "-q")
    git(checkout, "add", ".")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    commit = git(checkout, "rev-parse", "HEAD").strip()
    assert git_state(package) == (commit, False)
    (checkout / "notes.txt").write_text("untracked files are not the code\n")
    assert git_state(package) == (commit, False)
    (package / "__init__.py").write_text("x = 2\n")
    assert git_state(package) == (commit, True)
    installed = checkout / ".venv" / "site-packages" / "package"  # a copy inside the checkout that git does not track
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("x = 1\n")
    assert git_state(installed) == (None, None)
    assert git_state(tmp_path / "nowhere") == (None, None)


def _report_text(sweep: Path) -> str:
    return make_report([sweep]).markdown.read_text()


def test_the_report_names_the_code_of_its_jobs_and_warns_when_it_pools_several(tmp_path: Path, capsys) -> None:
    code = {"code.labelsmooth": "0.1.0", "code.git_commit": "a" * 40, "code.git_dirty": False, "code.torch": "2.14.1",
            "code.timm": "1.0.31"}  # fmt: skip
    same = tmp_path / "same"
    for number, (gamma, seed) in enumerate([(0.5, 0), (0.5, 1), (1.0, 0), (1.0, 1)]):
        write_job(same, number, gamma, seed, {**completed(gamma, seed, 0.9, 0.1, 0.05), **code})
    assert "Code: every completed job ran labelsmooth 0.1.0, commit aaaaaaaaaaaa, torch 2.14.1 (" in _report_text(same)

    mixed = tmp_path / "mixed"
    other = {**code, "code.git_commit": "b" * 40, "code.git_dirty": True, "code.timm": "1.0.32"}
    for number, (gamma, seed) in enumerate([(0.5, 0), (0.5, 1), (1.0, 0)]):
        write_job(mixed, number, gamma, seed, {**completed(gamma, seed, 0.9, 0.1, 0.05), **code})
    write_job(mixed, 3, 1.0, 1, {**completed(1.0, 1, 0.8, 0.1, 0.05), **other})
    text = _report_text(mixed)
    runs = {row["directory"]: row for row in read_csv(mixed / "runs.csv")}
    assert runs[str(mixed / "3")]["code.git_commit"] == "b" * 40 and runs[str(mixed / "3")]["code.git_dirty"] == "True"
    assert (
        "Code: **the tables pool jobs computed by 2 versions of the code** (they differ in `code.git_commit`, "
        "`code.git_dirty`, `code.timm`): labelsmooth 0.1.0, commit aaaaaaaaaaaa, torch 2.14.1, code.timm=1.0.31 "
        "(3 jobs); labelsmooth 0.1.0, commit bbbbbbbbbbbb with uncommitted changes, torch 2.14.1, "
        "code.timm=1.0.32 (1 job)."
    ) in text

    assert main([str(mixed)]) == 0  # report.py says it too
    printed = " ".join(capsys.readouterr().out.split())
    assert "warning: Code: the tables pool jobs computed by 2 versions of the code (they differ in code.git" in printed

    unrecorded = tmp_path / "unrecorded"
    write_job(unrecorded, 0, 0.5, 0, completed(0.5, 0, 0.9, 0.1, 0.05))
    assert "Code: not recorded in the jobs' metrics.json" in _report_text(unrecorded)

"""The report: confidence intervals and paired tests on known numbers, tables from run outputs, failures listed.

The sweep directories here are written by the test (metrics.json / .hydra files with chosen numbers) so
every expected value is known; tests/test_sweeps.py runs the report on a real sweep.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from labelsmooth.report.baseline import resolve_baseline
from labelsmooth.report.cli import main
from labelsmooth.report.jobs import NoJobsError, ParameterError
from labelsmooth.report.plots import pool_bins
from labelsmooth.report.stats import mean_confidence_interval, paired_comparison
from labelsmooth.report.wandb_page import build_wandb_report, wandb_groups, wandb_setting, why_wandb_cannot_publish
from tests.conftest import subprocess_env
from tests.report_helpers import make_report
from tests.wandb_records import offline_run_of

T_975_DF2 = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom (tables)
T_975_DF1 = 12.706204736174698


def test_confidence_interval_on_known_numbers() -> None:
    estimate = mean_confidence_interval([0.1, 0.2, 0.3])
    assert estimate.mean == pytest.approx(0.2)
    assert estimate.std == pytest.approx(0.1)
    assert estimate.half_width == pytest.approx(T_975_DF2 * 0.1 / math.sqrt(3))
    assert estimate.low == pytest.approx(0.2 - T_975_DF2 * 0.1 / math.sqrt(3))
    two = mean_confidence_interval([1.0, 3.0])  # s = √2, h = t · √2 / √2
    assert two.half_width == pytest.approx(T_975_DF1)
    one = mean_confidence_interval([0.5])
    assert one.mean == 0.5 and one.n == 1 and math.isnan(one.half_width)
    assert mean_confidence_interval([]).n == 0


def test_paired_t_test_on_known_numbers() -> None:
    # Differences per seed 0.1, 0.05, 0.05: mean 1/15, s = √(1/1200), t = mean / (s/√3) = 4 with 2 d.o.f.
    # The t distribution with 2 d.o.f. has CDF 1/2 + t / (2√(2 + t²)), so p = 1 - 4/√18.
    by_value = {0.8: {0: 0.9, 1: 0.8, 2: 0.85}, 1.0: {0: 0.8, 1: 0.75, 2: 0.8}, 0.5: {0: 0.1, 1: 0.2}}
    result = paired_comparison("digits", by_value, baseline=1.0, higher_is_better=True)
    assert result.best == 0.8 and result.n_pairs == 3
    assert result.t_statistic == pytest.approx(4.0)
    assert result.p_value == pytest.approx(1 - 4 / math.sqrt(18))
    assert result.mean_difference == pytest.approx(1 / 15)
    assert result.relative_difference == pytest.approx(100 * (0.85 - 0.78333333) / 0.85, rel=1e-5)
    lower = paired_comparison("digits", by_value, baseline=1.0, higher_is_better=False)
    assert lower.best == 0.5 and lower.n_pairs == 2  # seeds 0 and 1 only


def test_pooled_bins_weight_by_count() -> None:
    a = [{"lower": 0.0, "upper": 0.5, "count": 1, "accuracy": 1.0, "confidence": 0.4}]
    b = [
        {"lower": 0.0, "upper": 0.5, "count": 3, "accuracy": 0.0, "confidence": 0.2},
        {"lower": 0.5, "upper": 1.0, "count": 2, "accuracy": 0.5, "confidence": 0.7},
    ]
    pooled = pool_bins([a, b])
    assert pooled[0]["count"] == 4 and pooled[0]["accuracy"] == pytest.approx(0.25)
    assert pooled[0]["confidence"] == pytest.approx((0.4 + 0.6) / 4)
    assert pooled[1]["count"] == 2


def write_job(sweep: Path, number: int, gamma: float, seed: int, metrics: dict | str | None) -> Path:
    job = sweep / str(number)
    (job / ".hydra").mkdir(parents=True)
    config = {
        "seed": seed,
        "smoothing": {"_target_": "labelsmooth.smoothing.GammaSmoothing", "gamma": gamma},
        "logger": {"_target_": "pytorch_lightning.loggers.WandbLogger", "project": "labelsmooth", "group": None},
    }
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(["smoothing=gamma", f"smoothing.gamma={gamma}", f"seed={seed}"])
    )
    if isinstance(metrics, dict):
        (job / "metrics.json").write_text(json.dumps(metrics))
    elif isinstance(metrics, str):
        (job / "metrics.json").write_text(metrics)
    return job


def completed(gamma: float, seed: int, acc: float, ece: float, ece_ts: float) -> dict:
    return {
        "status": "completed", "dataset": "digits", "model": "resnet_v1", "smoothing": "gamma",
        "smoothing.gamma": gamma, "seed": seed, "val/acc_best": acc, "test/ece": ece, "test/ece_ts": ece_ts,
    }  # fmt: skip


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "multirun" / "2026-01-01" / "00-00-00"
    values = {(0.5, 0): (0.90, 0.10, 0.02), (0.5, 1): (0.92, 0.12, 0.03), (1.0, 0): (0.85, 0.20, 0.04)}
    for number, ((gamma, seed), (acc, ece, ece_ts)) in enumerate(values.items()):
        write_job(sweep, number, gamma, seed, completed(gamma, seed, acc, ece, ece_ts))
    failed = {"status": "failed", "error_type": "ValueError", "error": "boom", "seed": 1, "smoothing.gamma": 1.0}
    write_job(sweep, 3, 1.0, 1, failed)
    write_job(sweep, 4, 0.7, 0, None)  # never finished: no metrics.json
    write_job(sweep, 5, 0.7, 1, "{ not json")
    multirun = {
        "hydra": {
            "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
            "overrides": {"task": ["smoothing=gamma", "smoothing.gamma=0.5,1.0,0.7", "seed=0,1"]},
        }
    }
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    return sweep


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_report_tables_match_the_runs_and_list_the_failures(sweep: Path) -> None:
    report = make_report([sweep], plots=True)
    acc_rows = {float(r["smoothing.gamma"]): r for r in read_csv(sweep / "table_val_acc_best.csv")}
    assert set(acc_rows) == {0.5, 1.0}
    assert float(acc_rows[0.5]["mean"]) == pytest.approx(0.91)
    assert float(acc_rows[0.5]["ci95_half_width"]) == pytest.approx(T_975_DF1 * 0.01)  # s = 0.01·√2, n = 2
    assert acc_rows[0.5]["n"] == "2" and acc_rows[1.0]["n"] == "1"
    ece_rows = {float(r["smoothing.gamma"]): r for r in read_csv(sweep / "table_test_ece_ts.csv")}
    assert float(ece_rows[0.5]["mean"]) == pytest.approx(0.025)
    (best,) = read_csv(sweep / "best_vs_baseline_val_acc_best.csv")
    assert float(best["best_smoothing.gamma"]) == 0.5 and best["n_pairs"] == "1"
    assert float(best["diff_percent"]) == pytest.approx(100 * (0.91 - 0.85) / 0.91)
    (best_ece,) = read_csv(sweep / "best_vs_baseline_test_ece.csv")
    assert float(best_ece["best_smoothing.gamma"]) == 0.5  # lowest ECE
    # an error's diff % is relative to the baseline (0.11 for 0.20: -45 %, where "/ best" read -81.8 %)
    assert float(best_ece["diff_percent"]) == pytest.approx(100 * (0.11 - 0.20) / 0.20)
    text = report.markdown.read_text()
    assert "| digits | 91.00 ± 12.71 (n=2) | 85.00 (n=1) |" in text
    assert "Cells with n = 2 seeds have t(0.975, 1) = 12.71: their intervals are wide" in text
    # Table 3: γ = 0.5 has seeds 0 and 1, γ = 1 only seed 0 (seed 1 failed): diff % over unequal seeds is marked.
    assert "| digits | 0.5 | 91.00 ± 12.71 (n=2) | 85.00 (n=1) | 6.59 † | 1 | – |" in text
    assert "† best and baseline were not run on the same seeds" in text
    for expected in ("3 completed", "(failed)", "ValueError: boom", "(incomplete)", "(unreadable)"):
        assert expected in text
    assert report.missing == []  # the grid's 6 jobs all have a directory
    assert {j.status for j in report.jobs} == {"completed", "failed", "incomplete", "unreadable"}
    assert len(read_csv(sweep / "runs.csv")) == 6
    for name in ("accuracy_vs_gamma.png", "ece_vs_gamma.png"):
        assert (sweep / name).read_bytes()[:4] == b"\x89PNG"


def test_a_baseline_that_no_value_beats_is_said_to_be_best(tmp_path: Path) -> None:
    """Table 3 then compares the baseline with itself (diff 0, no test); its row says why."""
    sweep = tmp_path / "multirun" / "2026-01-04" / "00-00-00"
    for number, (gamma, seed, acc) in enumerate([(1.0, 0, 0.90), (1.0, 1, 0.92), (0.8, 0, 0.85), (0.8, 1, 0.86)]):
        write_job(sweep, number, gamma, seed, {**completed(gamma, seed, acc, 0.1, 0.05), "test/acc": acc})
    text = make_report([sweep], baseline=1.0).markdown.read_text()
    assert (
        "| digits | 1 (the baseline: no value beats it) | 91.00 ± 12.71 (n=2) | 91.00 ± 12.71 (n=2) | 0.00 | 2 | – |"
        in text
    )
    # a test table ranks nothing: it takes validation's choice, and another value may be better there
    assert text.count("(the baseline: no value beats it)") == 1 and "| digits | 1 | 91.00 ± 12.71 (n=2) |" in text


def test_a_running_job_is_listed_without_an_empty_error(sweep: Path) -> None:
    (sweep / "4" / "metrics.json").write_text(json.dumps({"status": "running", "seed": 0, "smoothing.gamma": 0.7}))
    text = make_report([sweep]).markdown.read_text()
    (line,) = [line for line in text.splitlines() if "/4` (" in line]
    assert line.endswith("/4` (running): smoothing=gamma smoothing.gamma=0.7 seed=0"), line


def test_jobs_of_the_grid_without_a_directory_are_listed_as_missing(sweep: Path) -> None:
    import shutil

    shutil.rmtree(sweep / "4")
    report = make_report([sweep])
    assert [(m.number, m.overrides) for m in report.missing] == [
        (4, ["smoothing=gamma", "smoothing.gamma=0.7", "seed=0"])
    ]
    assert "`" + str(sweep) + "/4` (missing): smoothing=gamma smoothing.gamma=0.7 seed=0" in report.markdown.read_text()


def test_a_job_directory_that_holds_another_jobs_run_leaves_the_grids_job_missing(sweep: Path) -> None:
    """A grid changed between runs of a sweep (values removed, then others added: each a prefix of the one before)
    left job 2's directory with another job's completed run, which refused the grid's job 2: that job is missing,
    and the report says what the directory holds."""
    metrics = json.loads((sweep / "2" / "metrics.json").read_text())
    metrics["overrides"] = ["seed=7", "smoothing.gamma=0.5", "smoothing=gamma"]
    (sweep / "2" / "metrics.json").write_text(json.dumps(metrics))
    (sweep / "0" / "metrics.json").write_text(
        json.dumps(
            {
                **json.loads((sweep / "0" / "metrics.json").read_text()),
                "overrides": ["seed=0", "smoothing.gamma=0.5", "smoothing=gamma"],
            }
        )
    )
    report = make_report([sweep])
    assert [(m.number, m.holds) for m in report.missing] == [(2, ["seed=7", "smoothing.gamma=0.5", "smoothing=gamma"])]
    assert "/2` (missing): smoothing=gamma smoothing.gamma=1.0 seed=0; its directory holds another job's run: " in (
        report.markdown.read_text()
    )


def test_empty_or_absent_directories_are_named_and_nothing_is_written(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoJobsError, match=r"empty: no jobs found .*; .*absent: not a directory: nothing to report"):
        make_report([empty, tmp_path / "absent"])
    assert not list(empty.iterdir()) and not (tmp_path / "absent").exists()


def test_wandb_publishing_says_why_it_cannot_when_offline(sweep: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert "offline" in why_wandb_cannot_publish()
    assert main([str(sweep), "--wandb"]) == 2
    out = capsys.readouterr().out
    assert "Not published to W&B" in out and "WANDB_MODE=offline" in out
    assert (sweep / "report.md").is_file()


def test_wandb_publishing_without_an_api_key_says_so(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert "wandb login" in why_wandb_cannot_publish()


def test_several_sweeps_give_one_row_per_data_set(tmp_path: Path) -> None:
    for dataset, acc in (("digits", 0.9), ("mnist", 0.99)):
        sweep = tmp_path / dataset
        for number, seed in enumerate((0, 1)):
            metrics = {**completed(1.0, seed, acc + seed / 100, 0.1, 0.01), "dataset": dataset}
            write_job(sweep, number, 1.0, seed, metrics)
    report = make_report([tmp_path / "digits", tmp_path / "mnist"], out_dir=tmp_path / "report")
    (table, *_) = report.tables
    assert list(table.values) == ["digits", "mnist"]
    assert table.estimate("mnist", 1.0).mean == pytest.approx(0.995)
    assert (tmp_path / "report" / "report.md").is_file()


def test_the_summary_run_holds_the_tables_and_plots(sweep: Path) -> None:
    """The summary run against a real (offline) W&B run, in a fresh process as report.py runs it: in this pytest
    process, the W&B service that earlier in-process runs started sometimes never wrote this run's log."""
    code = (
        "import sys; from pathlib import Path; from labelsmooth.report.build import make_report; "
        "from labelsmooth.report.wandb_page import log_summary_run; "
        "log_summary_run(make_report([Path(sys.argv[1])]), 'labelsmooth', None, 'sweep-2026-01-01-00-00-00')"
    )
    command = [sys.executable, "-c", code, str(sweep)]
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    page = offline_run_of(sweep)
    assert page.exit_code == 0 and page.job_type == "report" and page.group == "sweep-2026-01-01-00-00-00"
    assert any(path.startswith("media/table/tables/table_val_acc_best") for path in page.files), page.files
    assert any(path.startswith("media/images/plots/accuracy_vs_gamma") for path in page.files), page.files


def test_wandb_groups_are_those_the_training_jobs_logged_to(sweep: Path) -> None:
    jobs = make_report([sweep]).jobs
    assert wandb_groups(jobs) == ["sweep-2026-01-01-00-00-00"]  # train.py: "sweep-" + the sweep dir's last 2 parts
    assert wandb_setting(jobs, "project") == "labelsmooth" and wandb_setting(jobs, "entity") is None
    jobs[0].config["logger"]["group"] = "my-group"
    jobs[1].config["logger"] = {"_target_": "pytorch_lightning.loggers.TensorBoardLogger"}
    assert wandb_groups(jobs) == ["my-group", "sweep-2026-01-01-00-00-00"]
    assert wandb_groups(jobs[1:2]) == []


def _offline_socket(monkeypatch) -> None:
    import socket

    def refuse(self, address):
        raise AssertionError(f"network use: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def test_wandb_report_page_shows_the_tables_the_sweep_runs_and_the_summary_run(sweep: Path, monkeypatch) -> None:
    from wandb_workspaces import expr

    report = make_report([sweep], plots=True)
    group = "sweep-2026-01-01-00-00-00"
    _offline_socket(monkeypatch)  # building the page must not ask the W&B API
    page = build_wandb_report(report, "labelsmooth", "me", [group], "run123")
    assert (page.entity, page.project) == ("me", "labelsmooth")
    assert "2026-01-01/00-00-00" in page.title and "3 of 6 jobs completed" in page.description

    (markdown,) = [b for b in page.blocks if type(b).__name__ == "MarkdownBlock"]
    assert "| digits | 91.00 ± 12.71 (n=2) | 85.00 (n=1) |" in markdown.text  # Table 1, as in report.md
    assert "| digits | 11.00 ± 12.71 (n=2) | 20.00 (n=1) |" in markdown.text  # test ECE
    assert "ValueError: boom" in markdown.text and "![" not in markdown.text  # plots are panels, not file links

    training, summary = [b for b in page.blocks if type(b).__name__ == "PanelGrid"]
    (runs,) = training.runsets
    assert (runs.entity, runs.project) == ("me", "labelsmooth")
    filters = expr.filters_tree_to_v2(expr.expr_to_filters(runs.filters))["filters"]
    by_key = {f["key"]["name"]: (f["op"], f["value"]) for f in filters}
    assert by_key == {"group": ("IN", [group]), "jobType": ("!=", "report")}

    configs = [p._to_model().config for p in training.panels]
    scatter = [c for c, p in zip(configs, training.panels, strict=True) if type(p).__name__ == "ScatterPlot"]
    assert {c.x_axis for c in scatter} == {"config:smoothing.value.gamma"}  # nested W&B config smoothing.gamma
    shown = {"val/acc_best", "test/acc", "test/ece", "test/ece_ts"}  # the core metrics (optional ones: none here)
    assert {c.y_axis for c in scatter} == {f"summary:{key}" for key in shown}
    bars = [c for c, p in zip(configs, training.panels, strict=True) if type(p).__name__ == "BarPlot"]
    assert {c.group_by for c in bars} == {"smoothing.value.gamma"}
    assert {m for c in bars for m in c.metrics} == shown

    (summary_runs,) = summary.runsets
    (only,) = expr.filters_tree_to_v2(expr.expr_to_filters(summary_runs.filters))["filters"]
    assert (only["key"]["name"], only["op"], only["value"]) == ("name", "=", "run123")
    media = {k for p in summary.panels if type(p).__name__ == "MediaBrowser" for k in p.media_keys}
    assert {"plots/accuracy_vs_gamma", "plots/ece_vs_gamma"} <= media
    tables = {p.table_name for p in summary.panels if type(p).__name__ == "WeavePanelSummaryTable"}
    assert {"tables/table_val_acc_best", "tables/best_vs_baseline_test_ece", "tables/runs"} <= tables

    # The spec save() sends, with the API's one answer while building it (the project's id) given here.
    import wandb_workspaces.reports.v2.interface as interface

    monkeypatch.setattr(interface, "execute_graphql", lambda api, query, variables: {"project": {"internalId": "1"}})
    monkeypatch.setattr(interface, "_get_api", lambda: None)
    spec = page._to_model().spec.model_dump_json(by_alias=True, exclude_none=True)
    assert all(key in spec for key in ("config:smoothing.value.gamma", "tables/runs", "plots/ece_vs_gamma", group))

    seed_page = build_wandb_report(dataclasses.replace(report, parameter="seed"), "p", "me", [group], "run123")
    seed_grid = next(b for b in seed_page.blocks if type(b).__name__ == "PanelGrid")
    assert {p._to_model().config.x_axis for p in seed_grid.panels if type(p).__name__ == "ScatterPlot"} == {
        "config:seed.value"
    }


def test_wandb_report_page_without_a_group_says_so(sweep: Path) -> None:
    page = build_wandb_report(make_report([sweep]), "labelsmooth", "me", [], "run123")
    grids = [b for b in page.blocks if type(b).__name__ == "PanelGrid"]
    assert len(grids) == 1  # the summary run only
    assert any("No W&B group found" in str(getattr(b, "text", "")) for b in page.blocks)


def test_wandb_publishing_without_wandb_workspaces_says_how_to_install_it(sweep: Path, monkeypatch, capsys) -> None:
    for name in ("wandb_workspaces", "wandb_workspaces.reports", "wandb_workspaces.reports.v2"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main([str(sweep), "--wandb"]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "Not published to W&B" in out and "wandb-workspaces" in out and ".[report]" in out
    assert not (sweep / "wandb").exists()  # nothing logged


def test_wandb_publishing_logs_the_run_then_saves_the_page(sweep: Path, monkeypatch, capsys) -> None:
    """``--wandb`` end to end with an offline run; only the online check and the page's save are replaced."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    import labelsmooth.report.wandb_page as wandb_page

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setattr(wandb_page, "why_wandb_cannot_publish", lambda: None)
    saved = []

    def save(self, draft=False, clone=False):
        saved.append(self)
        self.id = "abc123"
        return self

    monkeypatch.setattr(wr.Report, "save", save)
    monkeypatch.setattr(wr.Report, "url", property(lambda self: f"https://wandb.test/{self.entity}/reports/{self.id}"))
    assert main([str(sweep), "--wandb", "--entity", "me"]) == 0
    (page,) = saved
    (run,) = (sweep / "wandb").glob("offline-run-*")
    run_id = run.name.rsplit("-", 1)[-1]
    summary = [b for b in page.blocks if type(b).__name__ == "PanelGrid"][-1]
    (only,) = expr.filters_tree_to_v2(expr.expr_to_filters(summary.runsets[0].filters))["filters"]
    assert only["value"] == run_id  # the page shows the run just logged
    out = " ".join(capsys.readouterr().out.split())
    assert "W&B report: https://wandb.test/me/reports/abc123" in out and "W&B summary run" in out


def test_strategies_compared_by_name_with_none_as_the_default_baseline(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun" / "2026-01-02" / "00-00-00"
    accuracies = {("none", 0): 0.80, ("none", 1): 0.82, ("uniform", 0): 0.85, ("uniform", 1): 0.86, ("gamma", 0): 0.7}
    for number, ((name, seed), acc) in enumerate(accuracies.items()):
        metrics = {**completed(0.9, seed, acc, 0.1, 0.05), "smoothing": name}
        write_job(sweep, number, 0.9, seed, metrics)
    report = make_report([sweep], parameter="smoothing", plots=True)
    assert report.baseline == "none"
    acc_table = report.tables[0]
    assert acc_table.columns == ["gamma", "none", "uniform"]
    (compared,) = report.comparisons["val/acc_best"]
    assert (compared.best, compared.baseline, compared.n_pairs) == ("uniform", "none", 2)
    assert compared.mean_difference == pytest.approx(0.045)
    text = report.markdown.read_text()
    assert "| digits | 70.00 (n=1) | 81.00 ± 12.71 (n=2) | 85.50 ± 6.35 (n=2) |" in text
    assert "best smoothing (highest mean) vs smoothing = none" in text
    assert "| digits | uniform | 85.50 ± 6.35 (n=2) | 81.00 ± 12.71 (n=2) | 5.26 | 2 |" in text
    assert (sweep / "accuracy_vs_smoothing.png").read_bytes()[:4] == b"\x89PNG"
    header = (sweep / "runs.csv").read_text().splitlines()[0].split(",")
    # no second "smoothing"; the strategies' parameters (here each job's smoothing.gamma) have their columns
    assert header[:7] == ["directory", "status", "dataset", "model", "smoothing", "smoothing.gamma", "seed"]
    # A numeric parameter given as text still finds its column; an explicit name overrides the default.
    assert make_report([sweep], parameter="smoothing", baseline="uniform").baseline == "uniform"
    assert make_report([sweep], parameter="smoothing.gamma", baseline="0.9").baseline == 0.9
    with pytest.raises(ParameterError, match=r"^--baseline abc: no completed job has smoothing=abc \(the values: "):
        make_report([sweep], parameter="smoothing", baseline="abc")
    assert make_report([sweep], parameter="smoothing.gamma").baseline == 1.0  # no such column: nothing compared


def test_wandb_axis_of_a_config_group_is_its_target(sweep: Path) -> None:
    from labelsmooth.report.jobs import collect
    from labelsmooth.report.wandb_page import wandb_config_key

    jobs, _, _ = collect([sweep])
    assert wandb_config_key(jobs, "smoothing.gamma") == "smoothing.gamma"
    assert wandb_config_key(jobs, "smoothing") == "smoothing._target_"  # the W&B config holds the group's node
    assert wandb_config_key(jobs, "seed") == "seed"


def test_the_swept_parameter_is_inferred_from_what_the_jobs_vary(sweep: Path, tmp_path: Path) -> None:
    from labelsmooth.report.jobs import Job, infer_parameter, pooled_keys, swept_parameters

    def jobs(*command_lines: list[str]) -> list[Job]:
        return [Job(directory=tmp_path / str(i), status="completed", overrides=o) for i, o in enumerate(command_lines)]

    assert make_report([sweep]).parameter == "smoothing.gamma"  # "seed=0,1" is a replicate, not the parameter
    by_name = jobs(
        ["smoothing=none", "seed=0", "trainer.max_epochs=3"], ["smoothing=uniform", "seed=1", "trainer.max_epochs=3"]
    )
    assert swept_parameters(by_name) == ["smoothing"] and infer_parameter(by_name) == "smoothing"
    two = jobs(["smoothing.gamma=0.5", "dataset.shift=0"], ["smoothing.gamma=1.0", "dataset.shift=0.1"])
    assert swept_parameters(two) == ["smoothing.gamma", "dataset.shift"]
    with pytest.raises(ParameterError, match="^the jobs vary smoothing.gamma, dataset.shift besides the seed: choose"):
        infer_parameter(two)  # ambiguous: --param chooses
    partial = jobs(["seed=0"], ["seed=0", "optimizer=sgd"])  # a key only some jobs set varies against its default
    assert infer_parameter(partial) == "optimizer"
    assert infer_parameter([]) == "smoothing.gamma"
    # two sweeps of one grid written to different places, or one per data set or model: the rows and the outputs'
    # places are never the parameter
    places = [["smoothing=none", "paths.log_dir=/a", "logger=none"], ["smoothing=uniform", "paths.log_dir=/a"]]
    places += [["smoothing=none", "paths.log_dir=/b", "figures=false", "dataset=mnist", "model=mlp"]]
    assert swept_parameters(jobs(*places)) == ["smoothing"] and infer_parameter(jobs(*places)) == "smoothing"
    # nothing varied: a column per γ when the jobs record one, else per strategy
    assert infer_parameter(jobs(["seed=0"], ["seed=1"])) == "smoothing"
    # two data sets' sweeps: a data set's own settings vary from row to row only (they were "the jobs vary
    # smoothing, dataset.image_size besides the seed", and "Pooled: ... dataset.image_size" under --param)
    folder = ["dataset=image_folder", "dataset.image_size=8", "dataset.channels=1"]
    rows = jobs(["smoothing=none", *folder], ["smoothing=uniform", *folder], ["smoothing=none"], ["smoothing=uniform"])
    assert infer_parameter(rows) == "smoothing" and pooled_keys(rows, "smoothing") == []
    shifted = jobs(["smoothing=none", "dataset.shift=0"], ["smoothing=uniform", "dataset.shift=0.1"])
    assert pooled_keys(shifted, "smoothing") == ["dataset.shift"]  # within one row: pooled, as before


# -- bad paths, duplicate runs, atomic writes --------------------------------------------------------------------
def test_a_mistyped_or_file_path_is_refused_before_anything_is_created(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    real = Path("outputs/multirun/2026-01-01/00-00-00")
    write_job(real, 0, 0.5, 0, completed(0.5, 0, 0.9, 0.1, 0.02))
    (real / "multirun.yaml").write_text("{}")
    typo = "outputs/multirun/2026-01-01/00-00-0"
    assert main([typo]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"report.py: {typo}: no such directory (existing sweep directories: {real})"
    named = Path("outputs/multirun/compare")  # hydra.sweep.dir=outputs/multirun/compare: its jobs are not sweeps
    write_job(named, 0, 0.5, 0, completed(0.5, 0, 0.9, 0.1, 0.02))
    (named / "multirun.yaml").write_text("{}")
    assert main(["outputs/multirun/compar"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"(existing sweep directories: {named})")
    assert not Path(typo).exists()

    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert main([str(real), str(a_file)]) == 2  # one bad path among good ones: nothing written
    assert capsys.readouterr().err.strip().startswith(f"report.py: {a_file}: not a directory")
    assert a_file.read_text() == "x" and not (real / "report.md").exists()
    assert main([str(real), "--out", str(a_file)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    below = a_file / "below"
    assert main([str(real), "--out", str(below)]) == 2  # a path that cannot be made: one line
    assert capsys.readouterr().err.strip() == f"report.py: NotADirectoryError: [Errno 20] Not a directory: '{below}'"
    assert main([str(real), "--project", "p"]) == 2  # without --wandb it would be ignored
    assert capsys.readouterr().err.strip() == "report.py: --project p: it names where --wandb publishes; add --wandb"
    assert main([str(real), "--param", "seed"]) == 2
    assert "--param seed: the seeds are every cell's replicates" in capsys.readouterr().err
    with pytest.raises(NotADirectoryError):
        make_report([tmp_path / "absent"])
    assert not (tmp_path / "absent").exists()


def test_a_directory_without_jobs_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "not_a_sweep"
    empty.mkdir()
    assert main([str(empty)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"report.py: {empty}: no jobs found (no */.hydra/config.yaml or */metrics.json): nothing to report"
    )
    assert not list(empty.iterdir())


def test_report_py_on_a_file_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    import subprocess

    a_file = tmp_path / "report.md"
    a_file.write_text("x")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(root / "report.py"), str(a_file)], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"report.py: {a_file}: not a directory" and result.stdout == ""


def test_the_same_job_in_two_sweeps_counts_once_and_the_other_is_listed(tmp_path: Path, capsys) -> None:
    import os

    first, second = tmp_path / "multirun" / "a", tmp_path / "multirun" / "b"
    for number, (gamma, seed, acc) in enumerate(((0.5, 0, 0.90), (0.5, 1, 0.92), (1.0, 0, 0.85), (1.0, 1, 0.86))):
        write_job(first, number, gamma, seed, completed(gamma, seed, acc, 0.1, 0.02))
    write_job(second, 0, 0.5, 0, completed(0.5, 0, 0.70, 0.3, 0.05))  # the same job again, an older result
    old = (first / "0" / "metrics.json").stat().st_mtime - 60
    os.utime(second / "0" / "metrics.json", (old, old))  # the later directory, but the older metrics.json

    report = make_report([first, second])
    acc = report.tables[0]
    assert acc.values["digits"][0.5] == {0: pytest.approx(0.90), 1: pytest.approx(0.92)}  # the newer, n = 2
    assert report.comparisons["val/acc_best"][0].n_pairs == 2
    (duplicate,) = report.duplicates
    assert (duplicate.job.directory, duplicate.kept.directory) == (second / "0", first / "0")
    text = report.markdown.read_text()
    assert "Jobs: 5 found (5 completed), 0 missing from the grid, 1 duplicate run not counted" in text
    assert "| digits | 91.00 ± 12.71 (n=2) | 85.50 ± 6.35 (n=2) |" in text
    listed = text.split("## Duplicate runs (not counted)", 1)[1]
    assert f"| digits | 0.5 | 0 | `{second / '0'}` | 70.00 | – | 30.00 | 5.00 | `{first / '0'}` |" in listed
    runs = {r["directory"]: r for r in read_csv(first / "runs.csv")}
    assert len(runs) == 5 and runs[str(second / "0")]["duplicate_of"] == str(first / "0")
    assert runs[str(first / "0")]["duplicate_of"] == ""

    os.utime(second / "0" / "metrics.json")  # now the second sweep's result is the most recent one
    assert main([str(first), str(second)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"warning: duplicate run not counted: {first / '0'}" in out
    assert make_report([first, second]).tables[0].values["digits"][0.5][0] == pytest.approx(0.70)


def test_report_files_are_written_atomically(sweep: Path, monkeypatch) -> None:
    import os

    import matplotlib.figure

    import labelsmooth.report.build as build_module
    import labelsmooth.report.tables as tables_module

    written = []
    real_write = build_module.write_text_atomic

    def recording_write(path: Path, text: str) -> Path:
        written.append(path.name)
        return real_write(path, text)

    for module in (build_module, tables_module):  # report.md, the CSV files
        monkeypatch.setattr(module, "write_text_atomic", recording_write)
    report = make_report([sweep], plots=True)
    csvs = {p.name for p in report.files if p.suffix == ".csv"}
    assert len(csvs) == 9 and sorted(written) == sorted([*csvs, "report.md"])
    assert not [p.name for p in sweep.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]
    mask = os.umask(0)
    os.umask(mask)
    for path in report.files:
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # as a plain open() would, not mkstemp's 0o600
    assert report.markdown.read_text().startswith("# Label smoothing sweep report\n")
    assert len(read_csv(sweep / "runs.csv")) == 6 and (sweep / "runs.csv").read_text().endswith("\n")
    png = sweep / "accuracy_vs_gamma.png"
    before = png.read_bytes()
    assert before[:4] == b"\x89PNG"

    def broken_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(b"half a PNG")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        make_report([sweep], plots=True)
    assert png.read_bytes() == before  # the old plot stays whole
    assert not [p.name for p in sweep.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_the_default_baseline_is_the_unsmoothed_value() -> None:
    gammas = [0.6, 0.8, 1.0]
    assert resolve_baseline(None, gammas, unsmoothed=1.0) == 1.0
    assert resolve_baseline(None, [0.0, 0.5, 1.0], unsmoothed=0.0) == 0.0  # ε = 0, not ε = 1 (a uniform target)
    assert resolve_baseline(None, [0.0, 0.5, 1.0], unsmoothed=1.0) == 1.0  # online's α = 1: the hard target
    assert resolve_baseline(None, [0.1, 0.2], unsmoothed=0.0) == 0.0  # not swept: Table 3 says no job ran it
    assert resolve_baseline(None, ["gamma", "none", "uniform"], unsmoothed=1.0) == "none"
    # Jobs that record no unsmoothed value: 1 if swept, else 0 if swept, else 1.
    assert resolve_baseline(None, gammas) == 1.0
    assert resolve_baseline(None, [0.0, 0.3]) == 0.0
    assert resolve_baseline(None, [0.1, 0.2]) == 1.0
    assert resolve_baseline("0.8", gammas, unsmoothed=1.0) == 0.8  # --baseline wins


def epsilon_sweep(tmp_path: Path, unsmoothed: dict[float, float] | None) -> Path:
    """ε ∈ {0, 0.5, 1} × seeds 0, 1; ``unsmoothed`` maps ε to the job's recorded ``unsmoothed.smoothing.epsilon``
    (None: runs from before it was recorded)."""
    sweep = tmp_path / "eps"
    accuracies = {0.0: (0.80, 0.82), 0.5: (0.85, 0.88), 1.0: (0.10, 0.12)}
    for number, (epsilon, seed) in enumerate((e, s) for e in accuracies for s in (0, 1)):
        job = sweep / str(number)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"smoothing.epsilon={epsilon}", f"seed={seed}"]))
        metrics = {
            "status": "completed", "dataset": "digits", "model": "mlp", "smoothing": "uniform", "seed": seed,
            "smoothing.epsilon": epsilon, "val/acc_best": accuracies[epsilon][seed], "test/ece": 0.1,
            "test/ece_ts": 0.05,
        }  # fmt: skip
        if unsmoothed is not None:
            metrics["unsmoothed.smoothing.epsilon"] = unsmoothed[epsilon]
        (job / "metrics.json").write_text(json.dumps(metrics))
    return sweep


def test_the_baseline_is_the_unsmoothed_value_the_jobs_record(tmp_path: Path) -> None:
    report = make_report([epsilon_sweep(tmp_path, {0.0: 0.0, 0.5: 0.0, 1.0: 0.0})])
    assert report.parameter == "smoothing.epsilon" and report.baseline == 0.0  # the rule of thumb would say 1
    (compared,) = report.comparisons["val/acc_best"]
    assert (compared.best, compared.baseline, compared.n_pairs) == (0.5, 0.0, 2)
    assert compared.mean_difference == pytest.approx(0.055)
    text = report.markdown.read_text()
    assert "Baseline: ε = 0, the value at which the jobs' strategy does not smooth" in text
    assert "(`unsmoothed.smoothing.epsilon` in metrics.json)." in text
    assert "| digits | 0.5 | 86.50 ± 19.06 (n=2) | 81.00 ± 12.71 (n=2) | 6.36 | 2 |" in text


def test_without_a_recorded_unsmoothed_value_table_3_says_which_rule_chose_the_baseline(tmp_path: Path) -> None:
    old = make_report([epsilon_sweep(tmp_path / "old", None)])
    assert old.baseline == 1.0  # 1 is swept
    assert (
        "Baseline: ε = 1: no job records `unsmoothed.smoothing.epsilon` (runs from before it was recorded, or not a "
        "strategy parameter), so the fallback rule applies (1 if swept, else 0 if swept, else 1): 1 is swept."
    ) in old.markdown.read_text()
    mixed = make_report([epsilon_sweep(tmp_path / "mixed", {0.0: 0.0, 0.5: 1.0, 1.0: 0.0})])
    assert mixed.baseline == 1.0
    assert "the jobs record different values of `unsmoothed.smoothing.epsilon` (0, 1)" in mixed.markdown.read_text()


def test_a_param_the_jobs_lack_or_do_not_vary_is_refused(sweep: Path, capsys) -> None:
    assert main([str(sweep), "--param", "smoothing.gama"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "report.py: --param smoothing.gama: no job has this key; the jobs vary smoothing.gamma"
    )
    assert main([str(sweep), "--param", "smoothing._target_"]) == 2  # one value for all: the γ columns would pool
    assert "every job has smoothing._target_=labelsmooth.smoothing.GammaSmoothing" in capsys.readouterr().err
    assert not (sweep / "report.md").exists()
    assert main([str(sweep), "--param", "smoothing.gamma"]) == 0


def test_reliability_diagrams_are_drawn_per_row_of_the_tables(tmp_path: Path) -> None:
    """Two models on one data set: two rows in the tables, so two diagrams, never one pooling both models."""
    sweep = tmp_path / "sweep"
    for number, (model, gamma, accuracy) in enumerate([("MLP", 0.9, 0.2), ("MLP", 1.0, 0.3), ("ResNet", 0.9, 0.9)]):
        job = write_job(sweep, number, gamma, 0, {**completed(gamma, 0, 0.9, 0.1, 0.02), "model": model})
        (job / "calibration").mkdir()
        rows = ["split,lower,upper,count,accuracy,confidence", f"test,0.5,1.0,10,{accuracy},0.75"]
        (job / "calibration" / "reliability_test.csv").write_text("\n".join(rows) + "\n")
    report = make_report([sweep], plots=True)
    drawn = sorted(p.name for p in report.files if p.name.startswith("reliability_"))
    assert drawn == ["reliability_digits__MLP_.png", "reliability_digits__ResNet_.png"]
    assert sorted(report.tables[0].values) == ["digits (MLP)", "digits (ResNet)"]


def test_no_plots_writes_the_tables_without_figures(sweep: Path) -> None:
    """``report.py --no-plots``: the same report.md and CSV files, no figure drawn or linked."""
    assert main([str(sweep), "--no-plots"]) == 0
    assert not list(sweep.glob("*.png"))
    tables = {p.name: p.read_text() for p in sweep.glob("*.csv")}
    text = (sweep / "report.md").read_text()
    assert "## Plots" not in text and ".png" not in text and len(tables) == 9
    assert main([str(sweep)]) == 0
    assert {p.name: p.read_text() for p in sweep.glob("*.csv")} == tables
    assert "## Plots" in (sweep / "report.md").read_text() and list(sweep.glob("accuracy_vs_*.png"))


def test_a_non_finite_value_is_left_out_and_listed(tmp_path: Path) -> None:
    """Also an optional metric's NaN, which metrics.json writes as null; an optional metric a run does not record
    at all (an older run) is left out silently."""
    from labelsmooth.runs.files import write_metrics_json

    sweep = tmp_path / "sweep"
    write_job(sweep, 0, 0.9, 0, {**completed(0.9, 0, 0.9, 0.1, 0.02), "test/aurc": 0.06})
    write_job(sweep, 1, 0.9, 1, {**completed(0.9, 1, 0.8, 0.1, 0.02), "test/ece": float("nan")})
    write_metrics_json(write_job(sweep, 2, 0.9, 2, None), {**completed(0.9, 2, 0.7, 0.1, 0.02), "test/aurc": math.nan})
    assert json.loads((sweep / "2" / "metrics.json").read_text())["test/aurc"] is None
    report = make_report([sweep])
    ece = next(t for t in report.tables if t.metric.key == "test/ece")
    assert ece.values["digits"][0.9] == {0: pytest.approx(0.1), 2: pytest.approx(0.1)}
    aurc = next(t for t in report.tables if t.metric.key == "test/aurc")
    assert aurc.values["digits"][0.9] == {0: pytest.approx(0.06)}  # job 1 records none: not listed
    text = report.markdown.read_text()
    for line in ("test/ece = nan is not a finite number", f"{sweep / '2'}: test/aurc is null in metrics.json"):
        assert any(line in problem for problem in report.problems) and line in text, line
    assert not any("/1: test/aurc" in problem for problem in report.problems)


def test_a_completed_job_without_the_compared_parameter_is_listed_as_left_out(tmp_path: Path) -> None:
    """``smoothing=none`` runs in a sweep compared by ``smoothing.gamma`` have no column: they were left out of every
    table while the report said every job completed."""
    sweep = tmp_path / "sweep"
    write_job(sweep, 0, 0.9, 0, completed(0.9, 0, 0.9, 0.1, 0.02))
    write_job(sweep, 1, 0.9, 1, completed(0.9, 1, 0.8, 0.1, 0.02))
    unsmoothed = {key: value for key, value in completed(0.9, 0, 0.7, 0.2, 0.03).items() if key != "smoothing.gamma"}
    config = write_job(sweep, 2, 0.9, 0, {**unsmoothed, "smoothing": "none"}) / ".hydra" / "config.yaml"
    unsmoothed_config = {**yaml.safe_load(config.read_text()), "smoothing": {"_target_": "x.CrossEntropy"}}
    config.write_text(yaml.safe_dump(unsmoothed_config))
    report = make_report([sweep], parameter="smoothing.gamma")
    line = f"{sweep / '2'}: completed, but records no smoothing.gamma; left out of every table"
    assert [p for p in report.problems if line in p] and line in report.markdown.read_text()
    assert not [p for p in report.problems if "records no" in p and f"{sweep / '2'}:" not in p]


def test_the_grid_of_a_sweep_under_the_directory_given_is_read_and_a_directory_given_twice_counts_once(
    sweep: Path,
) -> None:
    """``report.py multirun/2026-01-01`` (a sweep below it) said "0 missing from the grid" without reading its
    grid; ``report.py s s/`` counted each job of ``s`` as a duplicate of itself."""
    shutil.rmtree(sweep / "5")
    below = make_report([sweep.parent], out_dir=sweep.parent / "report")
    assert [(m.sweep_dir, m.number) for m in below.missing] == [(sweep, 5)]
    assert "1 missing from the grid" in below.markdown.read_text()
    twice = make_report([sweep, f"{sweep}/"], out_dir=sweep.parent / "twice")
    assert len(twice.jobs) == len(below.jobs) == 5 and not twice.duplicates
    for order in ([sweep.parent, sweep], [sweep, sweep.parent]):  # one inside the other: each job read once
        nested = make_report(order, out_dir=sweep.parent / "nested")
        assert len(nested.jobs) == 5 and not nested.duplicates
        assert [(m.sweep_dir, m.number) for m in nested.missing] == [(sweep, 5)]


def test_values_that_differ_beyond_six_digits_print_apart(tmp_path: Path) -> None:
    """γ = 0.9999999 and γ = 1 are two columns: their headers and Table 3's best and baseline print them apart."""
    sweep = tmp_path / "sweep"
    accuracies = {0.9999999: (0.95, 0.96), 1.0: (0.90, 0.91)}
    for number, (gamma, seed) in enumerate((g, s) for g in accuracies for s in (0, 1)):
        write_job(sweep, number, gamma, seed, completed(gamma, seed, accuracies[gamma][seed], 0.1, 0.05))
    text = make_report([sweep], parameter="smoothing.gamma").markdown.read_text()
    assert "| data set | γ = 0.9999999 | γ = 1 |" in text
    assert "| digits | 0.9999999 | 95.50 ± 6.35 (n=2) | 90.50 ± 6.35 (n=2) | 5.24 | 2 | – |" in text


def test_table_3_names_the_rows_it_leaves_out_and_why(tmp_path: Path) -> None:
    """A data set without runs at the baseline, and a test metric that the value validation chose lacks."""
    sweep = tmp_path / "sweep"
    accuracies = {1.0: (0.90, 0.91), 0.8: (0.95, 0.94)}
    for number, (gamma, seed) in enumerate((g, s) for g in accuracies for s in (0, 1)):
        metrics = completed(gamma, seed, accuracies[gamma][seed], 0.1 if gamma == 1.0 else math.nan, 0.05)
        write_job(sweep, number, gamma, seed, metrics)
    for seed in (0, 1):  # wine: no run at γ = 1
        write_job(sweep, 4 + seed, 0.8, seed, {**completed(0.8, seed, 0.7, 0.1, 0.05), "dataset": "wine"})
    report = make_report([sweep])
    assert [(c.row, c.best) for c in report.comparisons["val/acc_best"]] == [("digits", 0.8)]
    assert report.comparisons["test/ece"] == []
    text = " ".join(report.markdown.read_text().split())
    assert "Not compared: wine: no run at γ = 1 reports `val/acc_best`." in text
    assert (
        "Not compared: digits: no run at γ = 0.8, the best by `val/acc_best`, reports `test/ece`; "
        "wine: no run at γ = 1 reports `test/ece`." in text
    )
    assert main([str(sweep)]) == 0


def test_float_noise_in_a_swept_value_makes_no_second_column(tmp_path: Path) -> None:
    """Hydra's range(0.1, 1.1, 0.1) gives γ = 0.30000000000000004; another sweep lists 0.3: one column."""
    first, second = tmp_path / "a", tmp_path / "b"
    for seed in (0, 1):
        write_job(first, 2 * seed, 1.0, seed, completed(1.0, seed, 0.90 + 0.01 * seed, 0.1, 0.05))
        noisy = 0.1 + 0.1 + 0.1
        write_job(first, 2 * seed + 1, noisy, seed, completed(noisy, seed, 0.95 + 0.01 * seed, 0.1, 0.05))
    write_job(second, 0, 0.3, 2, completed(0.3, 2, 0.97, 0.1, 0.05))
    report = make_report([first, second], tmp_path / "out")
    assert report.tables[0].columns == [0.3, 1.0]
    assert report.tables[0].values["digits"][0.3] == {0: 0.95, 1: 0.96, 2: 0.97}
    (compared,) = report.comparisons["val/acc_best"]
    assert (compared.best, compared.n_pairs, compared.tied) == (0.3, 2, ())
    assert make_report([first, second], tmp_path / "out", baseline="0.3").baseline == 0.3


def test_jobs_without_hydra_files_are_told_apart_by_the_overrides_metrics_json_records(tmp_path: Path) -> None:
    """hydra.output_subdir=null leaves a job without .hydra/: its metrics.json's overrides still say which job it
    is, so the distillation table counts every student, not the newest of them all."""
    sweep = tmp_path / "sweep"
    for number, (teacher_gamma, seed) in enumerate((g, s) for g in (1.0, 0.8) for s in (0, 1, 2)):
        job = sweep / str(number)
        job.mkdir(parents=True)
        metrics = {
            "status": "completed", "dataset": "digits", "model": "mlp", "smoothing": "none", "seed": seed,
            "teacher.smoothing": "gamma", "teacher.smoothing.gamma": teacher_gamma, "val/acc_best": 0.9,
            "test/acc": 0.9 + 0.01 * seed, "test/ece": 0.1, "test/ece_ts": 0.05,
            "overrides": [f"seed={seed}", f"teacher_ckpt=/teachers/{teacher_gamma}/{seed}.ckpt"],
        }  # fmt: skip
        (job / "metrics.json").write_text(json.dumps(metrics))
    report = make_report([sweep])
    assert report.distillation is not None
    (runs,) = report.distillation.values.values()
    assert sorted(len(students) for students in runs.values()) == [3, 3]


def test_a_tie_for_best_goes_to_the_baseline_whatever_the_order_or_the_float32_rounding() -> None:
    """Validation accuracy is a multiple of 1/269 on digits: ties are common, and the command line's order or the
    last bit of a float32 mean picked the "best" value."""
    import numpy as np

    from labelsmooth.report.stats import paired_comparison

    stored = [float(np.float32(v)) for v in (739 / 807, 0.9, 0.93)]  # as metrics.json keeps them
    by_value = {0.9: dict(enumerate(stored)), 1.0: dict(enumerate([stored[2], stored[0], stored[1]]))}
    assert paired_comparison("digits", by_value, 1.0, True).best == 1.0
    strategies = {"gamma": {0: 0.5, 1: 0.6}, "uniform": {0: 0.5, 1: 0.6}, "none": {0: 0.6, 1: 0.5}}
    for order in (strategies, dict(reversed(strategies.items()))):
        assert paired_comparison("digits", order, "none", True).best == "none"
    # a tie between other values is named: neither wins silently
    strategies["none"] = {0: 0.4, 1: 0.5}
    tied = paired_comparison("digits", strategies, "none", True)
    assert (tied.best, tied.tied) == ("gamma", ("uniform",))
    # equally far from the baseline (0.5 - 0.3 and 0.7 - 0.5 differ in the last bit): the first in sorted order
    equally_far = {0.3: {0: 0.9, 1: 0.8}, 0.5: {0: 0.7, 1: 0.6}, 0.7: {0: 0.8, 1: 0.9}}
    assert paired_comparison("digits", equally_far, 0.5, True).best == 0.3
    equally_far = {9.5: {0: 0.9, 1: 0.8}, 10: {0: 0.7, 1: 0.6}, 10.5: {0: 0.8, 1: 0.9}}  # "10.5" < "9.5" as text
    assert paired_comparison("digits", equally_far, 10, True).best == 9.5


def test_a_tie_and_a_temperature_at_its_bound_are_shown_in_the_report(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun" / "2026-01-03" / "00-00-00"
    accuracies = {("none", 0): 0.80, ("none", 1): 0.82, ("uniform", 0): 0.85, ("uniform", 1): 0.86}
    accuracies |= {("gamma", 0): 0.85, ("gamma", 1): 0.86}
    for number, ((name, seed), acc) in enumerate(accuracies.items()):
        metrics = {**completed(0.9, seed, acc, 0.1, 0.05), "smoothing": name, "test/acc": acc}
        metrics["temperature_at_bound"] = 1.0 if (name, seed) == ("uniform", 1) else 0.0
        if name != "gamma":  # each strategy records its own parameters
            del metrics["smoothing.gamma"]
        if name == "uniform":
            metrics["smoothing.epsilon"] = 0.1
        write_job(sweep, number, 0.9, seed, metrics)
    report = make_report([sweep], parameter="smoothing")
    text = report.markdown.read_text()
    assert "| digits | gamma (tied: uniform) | 85.50 ± 6.35 (n=2) | 81.00 ± 12.71 (n=2) |" in text
    assert "Test accuracy of the selected checkpoint (%) by smoothing (`test/acc`)" in text
    ts_table = text.split("(`test/ece_ts`)", 1)[1].split("###", 1)[0]
    assert "| digits | 5.00 ± 0.00 (n=2) | 5.00 ± 0.00 (n=2) | 5.00 ± 0.00 (n=2) ‡1 |" in ts_table
    assert "‡k: for k of the n seeds the temperature fitted on the validation logits lies at a bound" in ts_table
    assert "‡" not in text.split("(`test/ece`)", 1)[1].split("###", 1)[0]  # only the temperature-scaled numbers
    (comparison,) = read_csv(sweep / "best_vs_baseline_val_acc_best.csv")
    assert comparison["tied_smoothing"] == "uniform"
    # the test tables take validation's choice, and say that validation could not tell it from the other
    (on_test,) = read_csv(sweep / "best_vs_baseline_test_acc.csv")
    assert (on_test["best_smoothing"], on_test["tied_smoothing"]) == ("gamma", "uniform")
    assert "Strategies and their parameters: `gamma` (gamma=0.9); `none` (none); `uniform` (epsilon=0.1)." in text


def test_the_same_gain_on_every_seed_has_no_t_test() -> None:
    """One image more on every seed: the paired differences differ only by float32 rounding, which gave p = 2.9e-11
    in one case and "–" in another."""
    import numpy as np

    from labelsmooth.report.stats import paired_comparison

    better = [float(np.float32(k / 269)) for k in (200, 210, 220)]
    baseline = [float(np.float32(k / 269)) for k in (199, 209, 219)]
    comparison = paired_comparison("digits", {0.9: dict(enumerate(better)), 1.0: dict(enumerate(baseline))}, 1.0, True)
    assert comparison.best == 0.9 and math.isnan(comparison.p_value)
    assert comparison.mean_difference == pytest.approx(1 / 269, rel=1e-5)


def test_wandb_report_page_of_several_data_sets_has_no_means_pooling_them(sweep: Path, monkeypatch) -> None:
    """A bar or curve of means by γ would average the runs of every data set: with two rows the page keeps the
    per-run scatter plots and says why the means are in the tables alone."""
    report = make_report([sweep])
    for table in report.tables:  # the same runs as a second data set's row
        for row in list(table.values):
            table.values["another data set"] = dict(table.values[row])
    _offline_socket(monkeypatch)
    page = build_wandb_report(report, "labelsmooth", "me", ["sweep-2026-01-01-00-00-00"], "run123")
    training, _ = [b for b in page.blocks if type(b).__name__ == "PanelGrid"]
    kinds = {type(p).__name__ for p in training.panels}
    assert kinds == {"ScatterPlot"}
    assert any("span 2 data sets or models" in getattr(b, "text", "") for b in page.blocks)


def test_the_report_says_which_checkpoint_its_test_cells_are_of(tmp_path: Path) -> None:
    """The test cells are of each job's selected checkpoint: the report names the selection (`checkpoint.monitor`,
    `checkpoint.mode`), warns when the jobs selected differently and when jobs validated on their test split."""
    sweep = tmp_path / "sweep"
    selections = [("val/acc", "max"), ("val/acc", "max"), ("val/nll_ts", "min"), (None, "min")]
    for number, (monitor, mode) in enumerate(selections):
        gamma, seed = (0.8, 1.0)[number % 2], number // 2
        metrics = {**completed(gamma, seed, 0.9, 0.1, 0.05), "checkpoint.monitor": monitor, "checkpoint.mode": mode}
        write_job(sweep, number, gamma, seed, {**metrics, **({"validation_split": "test"} if number == 3 else {})})
    text = make_report([sweep], parameter="smoothing.gamma", out_dir=tmp_path / "mixed").markdown.read_text()
    assert (
        "**The jobs select their tested checkpoints differently**: the best by `val/acc` (max) in 2 jobs; the best "
        "by `val/nll_ts` (min) in 1 job; the last epoch's (none monitored) in 1 job. Test cells pool them."
    ) in text
    assert "**1 of 4 completed jobs validate on their test split** (`dataset.val_size=0`, Mezzini's protocol)" in text
    shutil.rmtree(sweep / "2")
    shutil.rmtree(sweep / "3")
    text = make_report([sweep], parameter="smoothing.gamma", out_dir=tmp_path / "one").markdown.read_text()
    assert "Test cells are of the checkpoint each job selected: the best by `val/acc` (max) in 2 jobs." in text
    assert "validate on their test split" not in text


def test_a_full_disk_ends_report_py_in_one_line_that_says_how_to_go_on(tmp_path: Path, capsys, monkeypatch) -> None:
    import errno

    import labelsmooth.runs.files as files

    sweep = tmp_path / "multirun"
    for number, (gamma, seed, acc) in enumerate(((0.5, 0, 0.90), (1.0, 0, 0.85))):
        write_job(sweep, number, gamma, seed, completed(gamma, seed, acc, 0.1, 0.02))

    def full(path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "fsync_file", full)
    assert main([str(sweep), "--out", str(tmp_path / "report")]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and line.startswith("report.py: No space left on device writing ")
    assert line.endswith(": free some space, then run report.py again")

"""The W&B side of a report (``--wandb``, the ``report`` extra): a summary run of job type ``report`` holding the
tables and plots, and a W&B report page with the tables, panels over the sweep's training runs (its W&B group)
against the swept parameter, and the summary run's plots and tables (:func:`build_wandb_report`)."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labelsmooth.report.base import MARKDOWN_TITLE, param_label
from labelsmooth.report.jobs import Job
from labelsmooth.report.markdown import render_markdown
from labelsmooth.tracking.wandb_run import is_wandb, sweep_group_name, why_wandb_cannot_go_online

if TYPE_CHECKING:
    from labelsmooth.report.build import Report

REPORT_EXTRA = "pip install -e '.[report]' (or pip install 'wandb-workspaces>=0.4')"


def why_wandb_cannot_publish() -> str | None:
    """Why publishing to W&B cannot work from here (None when it can): offline mode, or what
    ``labelsmooth.tracking.wandb_run.why_wandb_cannot_go_online`` finds (no API key, no network)."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in {"offline", "dryrun", "disabled"}:
        return f"WANDB_MODE={mode}: W&B is set to offline; unset it (or WANDB_MODE=online) to publish"
    return why_wandb_cannot_go_online()


def _reports_api() -> Any:
    """``wandb_workspaces.reports.v2`` (the W&B Reports API); RuntimeError saying how to install it if missing."""
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError as error:
        raise RuntimeError(
            f"the W&B report page needs the wandb-workspaces package ({error}): {REPORT_EXTRA}"
        ) from error
    return wr


def _wandb_loggers(jobs: Sequence[Job]) -> list[tuple[Job, dict[str, Any]]]:
    """The jobs that logged to W&B, with their ``logger`` config."""
    found = []
    for job in jobs:
        logger = job.config.get("logger")
        if isinstance(logger, dict) and is_wandb(logger):
            found.append((job, logger))
    return found


def _plain(value: Any) -> str | None:
    """A config string as given (None for null, empty or an unresolved ``${...}`` interpolation)."""
    return value if isinstance(value, str) and value and "${" not in value else None


def wandb_groups(jobs: Sequence[Job]) -> list[str]:
    """The W&B groups of the jobs' training runs, named as ``labelsmooth.cli.train`` names them: ``logger.group``
    when the job's config sets it, else ``sweep-<date>-<time>`` from the sweep directory of a multirun job
    (``<sweep dir>/<job number>``). Jobs that logged elsewhere (another logger, none) and single runs have none."""
    groups = set()
    for job, logger in _wandb_loggers(jobs):
        if group := _plain(logger.get("group")):
            groups.add(group)
        elif logger.get("group") is None and job.directory.name.isdigit():
            groups.add(sweep_group_name(job.directory.resolve().parent))
    return sorted(groups)


def wandb_setting(jobs: Sequence[Job], key: str) -> str | None:
    """``logger.<key>`` (``project``, ``entity``) when every W&B job sets the same plain value, else None."""
    values = {_plain(logger.get(key)) for _, logger in _wandb_loggers(jobs)}
    return values.pop() if len(values) == 1 else None


def _summary_key(path: Path) -> str | None:
    """Where a report file goes in the summary run: ``tables/<name>`` (CSV) or ``plots/<name>`` (PNG)."""
    return {".csv": f"tables/{path.stem}", ".png": f"plots/{path.stem}"}.get(path.suffix)


@dataclass(frozen=True)
class SummaryRun:
    """The W&B run holding the report's tables and plots."""

    id: str
    url: str
    entity: str


def log_summary_run(report: Report, project: str, entity: str | None, group: str | None) -> SummaryRun:
    """Log the CSV tables (``wandb.Table`` under ``tables/<name>``) and plots (``wandb.Image`` under
    ``plots/<name>``) in one step to a W&B run of job type ``report`` in the sweep's group; attach report.md."""
    import wandb

    run = wandb.init(
        project=project,
        entity=entity,
        job_type="report",
        group=group,
        name=f"report-{group}" if group else "report",
        dir=str(report.out_dir),
    )
    try:
        logged: dict[str, Any] = {}
        for path in report.files:
            key = _summary_key(path)
            if path.suffix == ".csv":
                with open(path, newline="", encoding="utf-8") as handle:
                    rows = list(csv.reader(handle))
                if rows:
                    logged[key] = wandb.Table(columns=rows[0], data=rows[1:])
            elif path.suffix == ".png":
                logged[key] = wandb.Image(str(path))
        run.log(logged)
        run.save(str(report.markdown), base_path=str(report.out_dir), policy="now")
        return SummaryRun(id=run.id, url=str(run.url), entity=str(run.entity or ""))
    finally:
        run.finish()


def wandb_config_key(jobs: Sequence[Job], parameter: str) -> str:
    """The W&B config key that identifies the swept value: ``parameter`` itself (the runs' W&B config is their
    resolved Hydra config, nested), or ``<parameter>._target_`` where it names a config group whose node is a
    mapping (``smoothing``: runs then group by their strategy's class)."""
    for job in jobs:
        node: Any = job.config
        for part in parameter.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            return f"{parameter}._target_"
        if node is not None:
            return parameter
    return parameter


def build_wandb_report(report: Report, project: str, entity: str, groups: Sequence[str], summary_run_id: str) -> Any:
    """The W&B report page of the sweep, unsaved (a ``wandb_workspaces.reports.v2.Report``; ``.save()`` publishes
    it). Building it touches no network (``entity`` is given); saving, and turning its run sets into the saved
    spec, ask the W&B API. Blocks, in order:

    * the tables of report.md (Markdown; the plots are panels further down);
    * a panel grid over the sweep's training runs (``groups``, job type other than ``report``): per report
      metric a scatter plot of the run's summary value against the swept parameter (the nested W&B config key,
      e.g. ``smoothing.gamma``, one point per seed) and a bar chart of its mean ± standard deviation per value,
      and the validation accuracy per epoch averaged per value;
    * a panel grid over the summary run (``summary_run_id``): its plots (media browsers) and tables.
    """
    wr = _reports_api()
    from wandb_workspaces import expr

    parameter, symbol = report.parameter, param_label(report.parameter)
    metrics = [t.metric for t in report.tables if t.shown]
    completed = sum(job.status == "completed" for job in report.jobs)
    names = ", ".join("/".join(Path(d).resolve().parts[-2:]) for d in report.sweep_dirs) or str(report.out_dir)
    title = f"Label smoothing sweep {names}"
    description = (
        f"{completed} of {len(report.jobs)} jobs completed, {len(report.missing)} missing from the grid; swept "
        f"{parameter}. Made by report.py from " + ", ".join(str(d) for d in report.sweep_dirs) + "."
    )
    tables_md = render_markdown(report, plots=[]).removeprefix(MARKDOWN_TITLE + "\n\n")
    blocks: list[Any] = [wr.H1(text="Tables"), wr.MarkdownBlock(text=tables_md), wr.H1(text="Training runs")]
    x = wr.Config(wandb_config_key(report.jobs, parameter))
    if groups:
        runs = wr.Runset(
            entity=entity,
            project=project,
            name="training runs",
            filters=[expr.Metric("Group").isin(list(groups)), expr.Metric("JobType") != "report"],
        )
        panels = [
            wr.ScatterPlot(
                title=f"{m.key} vs {symbol} (one point per run)",
                x=x,
                y=wr.SummaryMetric(m.key),
                layout=wr.Layout(w=8, h=8),
            )
            for m in metrics
        ]
        rows = {row for table in report.tables for row in table.values}
        averaged = ""
        if len(rows) > 1:  # a mean by value over several data sets or models would pool them
            averaged = (
                f" The runs span {len(rows)} data sets or models, so there are no panels of means by {symbol}: "
                "the tables above give them row by row."
            )
        else:
            panels += [
                wr.BarPlot(
                    title=f"{m.key} by {symbol}: mean ± std over runs",
                    metrics=[m.key],
                    orientation="v",
                    groupby=x,
                    groupby_aggfunc="mean",
                    groupby_rangefunc="stddev",
                    layout=wr.Layout(w=8, h=8),
                )
                for m in metrics
            ]
            panels.append(
                wr.LinePlot(
                    title=f"val/acc per epoch, mean ± std by {symbol}",
                    x="epoch",  # Lightning logs the epoch with every metric
                    y=["val/acc"],
                    groupby=x,
                    groupby_aggfunc="mean",
                    groupby_rangefunc="stddev",
                    layout=wr.Layout(w=24, h=8),
                )
            )
        blocks += [
            wr.P(
                text=f"The sweep's training runs (W&B group {', '.join(groups)}), against {symbol} (config "
                f"{parameter}); values are fractions, the tables above show percent.{averaged}"
            ),
            wr.PanelGrid(runsets=[runs], panels=panels),
        ]
    else:
        blocks.append(
            wr.P(text="No W&B group found: the jobs did not log to W&B (logger) or were not part of a multirun.")
        )
    summary = wr.Runset(
        entity=entity, project=project, name="summary run", filters=[expr.Metric("ID") == summary_run_id]
    )
    keys = [(key, path) for path in report.files if (key := _summary_key(path))]
    media = [
        wr.MediaBrowser(
            title=key, media_keys=[key], num_columns=1, layout=wr.Layout(w=24 if "reliability" in key else 12, h=10)
        )
        for key, path in keys
        if path.suffix == ".png"
    ]
    tables = [
        wr.WeavePanelSummaryTable(table_name=key, layout=wr.Layout(w=24, h=10))
        for key, path in keys
        if path.suffix == ".csv"
    ]
    blocks += [
        wr.H1(text="Plots and tables"),
        wr.P(text="From the summary run (job type report): means with 95% confidence intervals over seeds."),
        wr.PanelGrid(runsets=[summary], panels=media + tables),
    ]
    return wr.Report(project=project, entity=entity, title=title[:128], description=description, blocks=blocks)


@dataclass(frozen=True)
class Publication:
    """Where ``--wandb`` put the sweep: the report page and the summary run."""

    report_url: str
    run_url: str


def publish_to_wandb(report: Report, project: str = "labelsmooth", entity: str | None = None) -> Publication:
    """Log the summary run (:func:`log_summary_run`), then save the report page (:func:`build_wandb_report`)
    next to it; return both URLs. Raises RuntimeError with the reason when wandb-workspaces is missing, W&B is
    offline or unreachable, or the page could not be saved."""
    _reports_api()
    reason = why_wandb_cannot_publish()
    if reason:
        raise RuntimeError(reason)
    groups = wandb_groups(report.jobs)
    run = log_summary_run(report, project, entity, groups[0] if groups else None)
    try:
        page = build_wandb_report(report, project, entity or run.entity, groups, run.id)
        page.save()
        return Publication(report_url=str(page.url), run_url=run.url)
    except Exception as error:  # the API's errors are of many kinds; the run is logged either way
        raise RuntimeError(
            f"the summary run is logged ({run.url}) but the report page could not be saved: "
            f"{type(error).__name__}: {error}"
        ) from error

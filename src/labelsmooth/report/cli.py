"""``labelsmooth-report`` / ``python report.py``: sweep directories to tables, plots and a W&B report.

``python report.py outputs/multirun/<date>/<time> [more sweep dirs] [--wandb]``: the argument checks made before
anything is written, the report (:func:`labelsmooth.report.build.make_report`), its tables in the terminal, and
``--wandb`` (:func:`labelsmooth.report.wandb_page.publish_to_wandb`).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labelsmooth.errors import DiskFullError, describe
from labelsmooth.report.base import format_value, param_label
from labelsmooth.report.build import Report, make_report
from labelsmooth.report.jobs import MULTIRUN_YAML, NoJobsError, ParameterError
from labelsmooth.report.markdown import code_note
from labelsmooth.report.tables import Table, comparison_rows
from labelsmooth.report.wandb_page import publish_to_wandb, wandb_setting

DESCRIPTION = "Turn sweep directories into the paper's tables and plots, with confidence intervals over seeds."
MULTIRUN_DIR = Path("outputs") / "multirun"


def nearest_sweep_dirs(path: str | os.PathLike, limit: int = 3) -> list[str]:
    """The existing sweep directories (those holding Hydra's ``multirun.yaml``: ``<multirun>/<date>/<time>``, or
    ``<multirun>/<name>`` for a named ``hydra.sweep.dir``) whose paths are closest to ``path``, or, when none is
    close, the most recent ones; ``<multirun>`` is the ``multirun`` folder that ``path`` names, else
    ``outputs/multirun`` here."""
    parts = Path(path).parts
    root = Path(*parts[: parts.index("multirun") + 1]) if "multirun" in parts[:-1] else MULTIRUN_DIR
    try:
        found = sorted(
            {str(p.parent) for pattern in (f"*/{MULTIRUN_YAML}", f"*/*/{MULTIRUN_YAML}") for p in root.glob(pattern)}
        )
    except OSError:
        return []
    return difflib.get_close_matches(str(path), found, n=limit, cutoff=0.6) or found[-limit:][::-1]


def invalid_paths(sweep_dirs: Sequence[str], out_dir: str | None) -> list[str]:
    """One line per path that cannot be used (a sweep directory that is not an existing directory, an ``--out``
    that exists but is not a directory), naming the nearest sweep directories."""
    lines = []
    for path in sweep_dirs:
        if not Path(path).is_dir():
            what = "not a directory" if Path(path).exists() else "no such directory"
            nearest = nearest_sweep_dirs(path)
            lines.append(
                f"{path}: {what}" + (f" (existing sweep directories: {', '.join(nearest)})" if nearest else "")
            )
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        lines.append(f"--out {out_dir}: exists and is not a directory")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=DESCRIPTION, prog="report.py")
    parser.add_argument("sweep_dirs", nargs="+", help="outputs/multirun/<date>/<time> (one or more)")
    parser.add_argument("--out", help="where to write the report (default: the first sweep directory)")
    parser.add_argument(
        "--param",
        help="the swept parameter, a number (smoothing.gamma) or a name (smoothing: compare strategies); default: "
        "the one key the sweep varies besides the seed, the rows (dataset, model) and the outputs' places (paths, "
        "logger, ...); with none, smoothing.gamma where recorded, else smoothing",
    )
    parser.add_argument(
        "--baseline",
        help="the parameter value to compare against (default: the unsmoothed value the jobs record in metrics.json, "
        "unsmoothed.<param>; none for a name; for jobs that record none, 1 if swept, else 0 if swept)",
    )
    parser.add_argument(
        "--no-plots", action="store_true", help="the tables alone, without the figures (about 1 s less per figure)"
    )
    parser.add_argument(
        "--wandb", action="store_true", help="also publish a W&B report page and a run with the tables and plots"
    )
    parser.add_argument("--project", help="W&B project for --wandb (default: the training runs' logger.project)")
    parser.add_argument("--entity", help="W&B entity for --wandb (default: the training runs' logger.entity)")
    return parser


def _terminal_table(title: str, first: str, table: Table) -> Any:
    """One row per parameter value, one column per data set (fits a terminal)."""
    from rich.table import Table as RichTable

    shown = RichTable(title=title)
    shown.add_column(first, justify="right")
    for row in table.values:
        shown.add_column(row, justify="right")
    for column in table.columns:
        shown.add_row(format_value(column), *(table.cell(r, column) for r in table.values))
    return shown


def print_tables(console: Any, report: Report) -> None:
    """The tables with values, Table 3 under each, and the distillation table, as rich tables."""
    from rich.markup import escape
    from rich.table import Table as RichTable

    symbol = param_label(report.parameter)
    for table in (t for t in report.tables if t.values):
        console.print(_terminal_table(f"{table.metric.title}: mean ± 95% CI (n)", symbol, table))
        items = report.comparisons[table.metric.key]
        if items:
            compared = RichTable(
                title=f"Table 3 · {table.metric.title}: {table.metric.best_label(symbol)} vs {symbol} = "
                f"{format_value(report.baseline)}"
            )
            for name in ("data set", f"best {symbol}", "best", "baseline", "diff %", "pairs", "p-value"):
                compared.add_column(name, justify="left" if name == "data set" else "right")
            for row in comparison_rows(items, table):
                compared.add_row(*row)
            console.print(compared)
        for item in report.uncompared.get(table.metric.key, []):
            console.print(
                f"[yellow]not in Table 3[/] of {escape(table.metric.key)}: {escape(str(item))}", soft_wrap=True
            )
    if (distilled := report.distillation) is not None:
        title = f"{distilled.metric.title} by the teacher's smoothing: mean ± 95% CI (n)"
        console.print(_terminal_table(title, "teacher", distilled))


def print_problems(console: Any, report: Report) -> None:
    """Failed, unfinished (a damaged ``metrics.json``: ``unreadable``) and missing jobs, problems found (a
    damaged predictions file), and the duplicate runs not counted: one line each, however long (paths stay
    whole)."""
    from rich.markup import escape

    for job in (j for j in report.jobs if j.status != "completed"):
        console.print(f"[yellow]{job.status}[/]: {escape(str(job.directory))} {escape(job.error)}", soft_wrap=True)
    for item in report.missing:
        missing = f"{item.sweep_dir}/{item.number} {' '.join(item.overrides)}{item.holds_note}"
        console.print(f"[yellow]missing[/]: {escape(missing)}", soft_wrap=True)
    for problem in report.problems:
        console.print(f"[yellow]warning[/]: {escape(problem)}", soft_wrap=True)
    for item in report.duplicates:
        console.print(
            f"[yellow]warning: duplicate run not counted[/]: {escape(str(item.job.directory))} (same data set, "
            f"{param_label(report.parameter)} and seed as the more recent {escape(str(item.kept.directory))}; see "
            "report.md)",
            soft_wrap=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``report.py``: 0 when the report is written (and published with ``--wandb``), 2 for unusable arguments or
    a failed publication (the local report is then complete)."""
    from rich.console import Console
    from rich.markup import escape

    args = build_parser().parse_args(argv)
    invalid = invalid_paths(args.sweep_dirs, args.out)
    invalid += [f"--{name} {value}: it names where --wandb publishes; add --wandb" for name, value in (
        ("project", args.project), ("entity", args.entity)) if value is not None and not args.wandb]  # fmt: skip
    for line in invalid:  # before anything is created
        print(f"report.py: {line}", file=sys.stderr)
    if invalid:
        return 2
    console = Console()
    try:
        report = make_report(args.sweep_dirs, args.out, args.param, args.baseline, plots=not args.no_plots)
    except (ParameterError, NoJobsError) as error:
        print(f"report.py: {error}", file=sys.stderr)
        return 2
    except DiskFullError as error:
        print(f"report.py: {error.what}: free some space, then run report.py again", file=sys.stderr)
        return 2
    except OSError as error:  # an --out that cannot be created or written (its path is in the message)
        if error.filename is None:
            raise
        print(f"report.py: {describe(error)}", file=sys.stderr)
        return 2
    print_tables(console, report)
    print_problems(console, report)
    if (note := code_note(report.counted)) is not None:
        text, several = escape(note[0].replace("**", "").replace("`", "")), note[1]  # report.md's line, plain
        console.print(f"[yellow]warning[/]: {text}" if several else text, soft_wrap=True)
    console.print(f"Swept parameter: [bold]{escape(report.parameter)}[/] (--param to choose another)")
    console.print(f"Report: [bold]{report.markdown}[/] ({len(report.files)} files in {report.out_dir})")
    if args.wandb:
        project = args.project or wandb_setting(report.jobs, "project") or "labelsmooth"
        entity = args.entity or wandb_setting(report.jobs, "entity")
        try:
            published = publish_to_wandb(report, project, entity)
        except RuntimeError as error:
            console.print(f"[red]Not published to W&B[/]: {escape(str(error))}. The report files above are complete.")
            return 2
        console.print(f"W&B report: [bold]{published.report_url}[/]")
        console.print(f"W&B summary run (tables and plots): {published.run_url}")
    return 0

"""Run every benchmark and write ``bench/results/<name>.json`` and ``bench/RESULTS.md``.

``make bench`` (or ``python bench/run_all.py``); ``--quick`` for fewer repetitions, ``--size smoke`` for the
smallest sizes (only to show that each benchmark runs: tests/test_bench.py), ``--only loss data`` for some of
them, ``--report`` to re-render RESULTS.md from the JSON files already there, ``--results-dir D`` to write the
JSON files and RESULTS.md into D instead of bench/. Each benchmark runs in its own process (a crash in one does
not lose the others); its full output goes to ``outputs/bench-logs/<name>.log`` (``D/logs/`` with
``--results-dir``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from common import REPO_ROOT, RESULTS_DIR, machine_info, size_arguments  # noqa: E402

BENCHMARKS = {
    "pipeline": "bench_pipeline.py",
    "loss": "bench_loss.py",
    "data": "bench_data.py",
    "sweep": "bench_sweep.py",
    "startup": "bench_startup.py",
    "fused": "bench_fused.py",
}
LOG_DIR = REPO_ROOT / "outputs" / "bench-logs"
NOTES = BENCH_DIR / "NOTES.md"


def run_benchmark(name: str, size: str, results_dir: Path) -> tuple[int, float]:
    log_dir = LOG_DIR if results_dir == RESULTS_DIR else results_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    args = [sys.executable, str(BENCH_DIR / BENCHMARKS[name]), "--size", size, "--results-dir", str(results_dir)]
    print(f"-- {name}: {' '.join(args[1:])}  (log: {log})", flush=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.run(args, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT).returncode
    elapsed = time.perf_counter() - start
    print(f"   {'done' if code == 0 else f'FAILED ({code})'} in {elapsed:.0f} s", flush=True)
    result_file = results_dir / f"{name}.json"
    if code == 0 and result_file.is_file():  # keep the duration with the numbers, for --report
        result = json.loads(result_file.read_text())
        result["took_s"] = round(elapsed, 1)
        result_file.write_text(json.dumps(result, indent=2) + "\n")
    return code, elapsed


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return lines


def section_pipeline(result: dict) -> list[str]:
    rows = [
        [
            r["case"],
            r.get("train_steps_per_epoch", "all"),
            r["train_ours_s"],
            r["train_loop_s"],
            f"**{fmt(r['train_ratio'])}**",
            r["epoch_ours_s"],
            r["epoch_loop_s"],
            f"**{fmt(r['epoch_ratio'])}**",
            f"{r['val_acc_ours']:.4f} / {r['val_acc_loop']:.4f}",
            _same_training(r),
        ]
        for r in result["rows"]
    ]
    headers = [
        "case",
        "steps/epoch",
        "train pass: ours s",
        "loop s",
        "ratio",
        "whole epoch: ours s",
        "loop s",
        "ratio",
        "final val acc ours / loop",
        "same training (val acc, train loss)",
    ]
    return table(headers, rows)


def _same_training(row: dict) -> str:
    if "same_training" not in row:
        return "not checked"
    losses = f"loss {row['train_loss_ours']:.6g} / {row['train_loss_loop']:.6g}"
    return f"yes ({losses})" if row["same_training"] else f"**NO** ({losses})"


def section_loss(result: dict) -> list[str]:
    rows = []
    for r in result["rows"]:
        if "error" in r:
            rows.append([r["strategy"], r["K"], r.get("dtype", ""), "", "", r["error"][:80], ""])
            continue
        ratio_text = fmt(r["ratio"])
        if r["strategy"] in {"uniform", "gamma"}:
            ratio_text = f"**{ratio_text}** (goal <= 1.05)"
        core = f"{fmt(r['core_us'])} ({fmt(r['core_ratio'])})" if "core_us" in r else ""
        rows.append([r["strategy"], r["K"], r["dtype"], r["ours_us"], r["baseline_us"], ratio_text, core, r["epsilon"]])
    headers = [
        "strategy", "K", "dtype", "ours µs", "F.cross_entropy µs", "ratio",
        "compute_loss alone µs (ratio)", "ε of baseline",
    ]  # fmt: skip
    return table(headers, rows)


def section_data(result: dict) -> list[str]:
    lines = []
    if result.get("note"):
        lines.append(f"Note: {result['note']}\n")
    rows = [
        [
            r["baseline"],
            r.get("ours_img_s", float("nan")),
            r["baseline_img_s"],
            f"**{fmt(r.get('speedup', float('nan')))}**",
        ]
        for r in result["rows"]
    ]
    return lines + table(["baseline", "ours img/s", "baseline img/s", "speed-up (ours / baseline)"], rows)


def section_sweep(result: dict) -> list[str]:
    rows = [
        [
            r["measure"],
            r["jobs"],
            r["wall_s"],
            r["work_s"],
            r.get("evaluation_s", ""),
            f"**{fmt(r['overhead_per_job_s'])}**" if "goal" in r else fmt(r["overhead_per_job_s"]),
            fmt(r["wall_s"] / r["work_s"]) if r.get("work_s") else "",
        ]
        for r in result["rows"]
    ]
    headers = [
        "measure",
        "jobs",
        "wall s",
        "training (fit) inside jobs s",
        "of the rest: final validation + test s",
        "overhead per job s (goal <= 1.5)",
        "wall / training",
    ]
    return table(headers, rows)


def section_startup(result: dict) -> list[str]:
    rows = [[r["measure"], r["ours_s"], r["baseline_s"], f"**{fmt(r['ratio'])}**"] for r in result["rows"]]
    return table(["measure", "ours s", "baseline s", "ratio"], rows)


def section_fused(result: dict) -> list[str]:
    rows = [
        [
            r["model"],
            r["jobs"],
            r["launcher"],
            r["wall_s"],
            f"**{fmt(r['wall_vs_basic'])}**",
            r["fit_s"],
            f"**{fmt(r['fit_vs_basic'])}**",
            f"{r['peak_mib']:.0f}",
            f"{r['peak_gpu_mib']:.0f}" if r.get("peak_gpu_mib") is not None else "",
            fmt(r["val_acc_best_max_diff"]),
            fmt(r["test_nll_max_diff"]),
        ]
        for r in result["rows"]
    ]
    headers = [
        "model", "jobs", "launcher", "wall s", "wall / basic", "training (fit) s, jobs' fits summed", "fit / basic",
        "peak MiB (PSS)", "peak GPU MiB allocated", "val/acc_best vs basic (max diff)", "test/nll vs basic (max diff)",
    ]  # fmt: skip
    commands = [f"`{result['command']}`", ""]
    if "gpu_case" in result:
        commands += [f"GPU grid ({result['gpu_case']}): `{result['gpu_command']}`", ""]
    return commands + table(headers, rows)


SECTIONS = {
    "pipeline": section_pipeline,
    "loss": section_loss,
    "data": section_data,
    "sweep": section_sweep,
    "startup": section_startup,
    "fused": section_fused,
}


def render(results_dir: Path = RESULTS_DIR) -> str:
    machine = machine_info()
    suite = results_dir / "run_all.json"
    suite_line = ""
    if suite.is_file():
        run = json.loads(suite.read_text())
        size = run.get("size", "quick" if run.get("quick") else "full")
        when = f" at commit {run['git_commit']}, {run['date']}" if "git_commit" in run else ""
        suite_line = (
            f"- last `make bench`{'' if size == 'full' else f' --size {size}'}{when}: {run['total_s']:.0f} s in all"
        )
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`bench/run_all.py`) from `bench/results/*.json`; do not edit by hand.",
        "",
        f"- machine: {machine['cpu']}, **{machine['cpu_cores']} CPU cores**, GPU: {machine['gpu']}",
        f"- torch {machine['torch']}, Python {machine['python']}; rendered at commit {machine['git_commit']}",
        f"- rendered {machine['date']} (1-minute load average {machine['load_average_1min']});"
        " each section says when it was measured",
        "- medians of repetitions, ours and the baseline alternating, except the fused grids (each launcher once,"
        " in turn); ratio = ours / baseline",
        "  (time: lower is better), except the data path (images/s: speed-up = ours / baseline). The load average"
        " is read once, when a section's results are written.",
        suite_line,
        "",
    ]
    for name, render_section in SECTIONS.items():
        path = results_dir / f"{name}.json"
        if not path.is_file():
            lines += [f"## {name}", "", "not run", ""]
            continue
        result = json.loads(path.read_text())
        took = f" (took {result['took_s']:.0f} s)" if "took_s" in result else ""
        if result.get("size", "full") != "full":
            took += f", `--size {result['size']}`: its numbers mean nothing"
        measured = result.get("machine", {})
        lines += [f"## {result.get('title', name)}", ""]
        lines += [
            f"goal: {result.get('goal', 'report')}; measured {measured.get('date', '?')} at commit "
            f"{measured.get('git_commit', '?')}, load average "
            f"{measured.get('load_average_1min', '?')}{took}; raw numbers: `bench/results/{name}.json`",
            "",
        ]
        lines += render_section(result)
        lines.append("")
    if NOTES.is_file():
        lines += ["", NOTES.read_text().strip(), ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size_arguments(parser)
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--report", action="store_true", help="only re-render RESULTS.md from results/*.json")
    args = parser.parse_args()
    failed = []
    start = time.perf_counter()
    if not args.report:
        for name in args.only or list(BENCHMARKS):
            code, _ = run_benchmark(name, args.size, args.results_dir)
            if code != 0:
                failed.append(name)
        if not args.only:
            total = {"total_s": round(time.perf_counter() - start, 1), "size": args.size, "failed": failed}
            total.update({key: machine_info()[key] for key in ("git_commit", "date")})
            (args.results_dir / "run_all.json").write_text(json.dumps(total, indent=2) + "\n")
    results_md = BENCH_DIR / "RESULTS.md" if args.results_dir == RESULTS_DIR else args.results_dir / "RESULTS.md"
    results_md.write_text(render(args.results_dir))
    print(results_md.read_text())
    print(f"total {time.perf_counter() - start:.0f} s; wrote {results_md}")
    if failed:
        sys.exit(f"failed benchmarks: {', '.join(failed)} (see their logs above)")


if __name__ == "__main__":
    main()

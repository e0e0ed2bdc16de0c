"""Where the pipeline's time per training step goes: cProfile over ``train()`` on digits (not part of
``make bench``; run ``python bench/profile_pipeline.py [overrides]``).

Prints the Lightning, torchmetrics and labelsmooth functions called once or more per step, by cumulative
time, and writes the full profile to ``outputs/bench-logs/pipeline.prof`` (open it with ``pstats`` or
snakeviz). Timings under cProfile are inflated for Python-heavy code (the framework) and not for the
compiled kernels (the model), so read the shares, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

from bench_pipeline import Case, run_pipeline
from common import REPO_ROOT, use_bench_threads

PACKAGES = (
    "pytorch_lightning",
    "lightning_fabric",
    "lightning_utilities",
    "torchmetrics",
    "labelsmooth",
    "torch/optim",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", default=["model=mlp"], help="train.py overrides")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    use_bench_threads()
    run_pipeline(Case("warm-up", args.overrides, 1), seed=0)
    profiler = cProfile.Profile()
    profiler.enable()
    result = run_pipeline(Case("profiled", args.overrides, args.epochs), seed=0)
    profiler.disable()
    out = REPO_ROOT / "outputs" / "bench-logs" / "pipeline.prof"
    out.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(out)

    stats = pstats.Stats(profiler)
    steps = max(
        (nc for (f, _, name), (_, nc, *_rest) in stats.stats.items() if name == "training_step" and "labelsmooth" in f),
        default=1,
    )
    rows = []
    for (filename, line, name), (_, calls, tottime, cumtime, _callers) in stats.stats.items():
        if calls >= steps and any(p in filename for p in PACKAGES):
            short = filename.split("site-packages/")[-1].split("src/")[-1]
            rows.append((cumtime, calls, tottime, f"{short}:{line}({name})"))
    rows.sort(reverse=True)
    print(f"{steps} training steps; epochs (s, under the profiler): {[round(s, 3) for s in result['epoch_s']]}")
    print(f"{'cum s':>8} {'ms/step':>8} {'calls':>7} {'own s':>7}  function")
    for cumtime, calls, tottime, label in rows[: args.top]:
        print(f"{cumtime:8.3f} {1000 * cumtime / steps:8.3f} {calls:7d} {tottime:7.3f}  {label}")
    print(f"full profile: {out}")


if __name__ == "__main__":
    main()

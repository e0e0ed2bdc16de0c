"""Benchmark 2: forward + backward of every smoothing strategy vs ``F.cross_entropy(label_smoothing=ε)``.

The strategies are whatever ``conf/smoothing/*.yaml`` holds when the benchmark runs, each instantiated from
its YAML with ``num_classes=K`` (so a new strategy is picked up without touching this file). N = 256 logits,
K in {10, 100, 1000}, float32 and bfloat16 logits; ε of the baseline is the strategy's equivalent uniform
smoothing: its own ``epsilon`` when it has one, else its ``equivalent_epsilon`` (γ smoothing: ``K(1-γ)/(K-1)``;
KL to uniform: ``β/(1+β)``), else 0, plain cross entropy (the calibration losses: focal, MbLS, LogitNorm, label
relaxation, MaxSup, and the other regularisers). Each timing is the median over alternating repetitions of a
block of calls, with one torch thread.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from common import (
    BENCH_THREADS,
    alternate,
    benchmark_main,
    median,
    ratio,
    use_bench_threads,
)

from labelsmooth.cli.build import CONFIG_DIR
from labelsmooth.cli.build import compose_config as compose_train_config

N = 256
CLASS_COUNTS = (10, 100, 1000)
DTYPES = {"float32": torch.float32, "bf16": torch.bfloat16}
GOAL_STRATEGIES = {"uniform", "gamma"}


def strategy_names() -> list[str]:
    return [path.stem for path in sorted((CONFIG_DIR / "smoothing").glob("*.yaml"))]


def strategy_configs() -> dict[str, Any]:
    """Each strategy's node of the composed config (``python train.py smoothing=<name>``), interpolations
    (e.g. ``${seed}``) resolved."""
    return {name: compose_train_config([f"smoothing={name}"]).smoothing for name in strategy_names()}


def baseline_epsilon(strategy: torch.nn.Module) -> float:
    """ε of ``F.cross_entropy(label_smoothing=ε)`` that matches the strategy (0: plain cross entropy)."""
    for name in ("epsilon", "equivalent_epsilon"):
        if hasattr(strategy, name):
            return float(getattr(strategy, name))
    return 0.0


def block_timer(loss_fn, logits: torch.Tensor, target: torch.Tensor, calls: int):
    def timed() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            leaf = logits.detach().requires_grad_(True)
            loss_fn(leaf, target).backward()
        return (time.perf_counter() - start) / calls

    return timed


def run(size: str = "full") -> dict[str, Any]:
    import hydra

    repetitions = {"full": 11, "quick": 3, "smoke": 1}[size]
    use_bench_threads()
    rows: list[dict[str, Any]] = []
    generator = torch.Generator().manual_seed(0)
    for name, cfg in strategy_configs().items():
        for num_classes in CLASS_COUNTS:
            # Blocks of about 10 ms, so one time slice lost to another process spoils few of them.
            calls = min(200, max(5, 2_000_000 // (N * num_classes))) if size == "full" else 5
            try:
                strategy = hydra.utils.instantiate(cfg, num_classes=num_classes)
            except Exception as error:  # a strategy that needs more than num_classes: report, do not crash
                rows.append({"strategy": name, "K": num_classes, "error": f"{type(error).__name__}: {error}"})
                continue
            epsilon = baseline_epsilon(strategy)

            def baseline_loss(logits, target, epsilon=epsilon):
                return F.cross_entropy(logits, target, label_smoothing=epsilon)

            for dtype_name, dtype in DTYPES.items():
                logits = torch.randn(N, num_classes, generator=generator).mul(3).to(dtype)
                target = torch.randint(0, num_classes, (N,), generator=generator)
                row: dict[str, Any] = {"strategy": name, "K": num_classes, "dtype": dtype_name, "epsilon": epsilon}
                try:
                    strategy.train()
                    ours_value = strategy(logits.float(), target).item()
                    for _ in range(3):  # warm-up
                        block_timer(strategy, logits, target, 2)()
                        block_timer(baseline_loss, logits, target, 2)()
                    ours, base = alternate(
                        block_timer(strategy, logits, target, calls),
                        block_timer(baseline_loss, logits, target, calls),
                        repetitions,
                    )
                except Exception as error:
                    row["error"] = f"{type(error).__name__}: {error}"
                    rows.append(row)
                    continue
                row["ours_us"] = median(ours) * 1e6
                row["baseline_us"] = median(base) * 1e6
                row["ratio"] = ratio(row["ours_us"], row["baseline_us"])
                if name in GOAL_STRATEGIES:
                    row["goal"] = "<= 1.05"
                    if dtype is torch.float32:  # the loss itself, without the nn.Module call and autocast check
                        core, base_again = alternate(
                            block_timer(strategy.compute_loss, logits, target, calls),
                            block_timer(baseline_loss, logits, target, calls),
                            repetitions,
                        )
                        row["core_us"] = median(core) * 1e6
                        row["core_ratio"] = ratio(median(core), median(base_again))
                    # Same loss as torch's label smoothing (in float32): the comparison is like for like.
                    row["loss_gap_vs_torch"] = abs(ours_value - baseline_loss(logits.float(), target).item())
                rows.append(row)
    return {
        "title": f"Loss forward+backward, N={N}, microseconds per call",
        "goal": "uniform and gamma <= 1.05x F.cross_entropy(label_smoothing)",
        "strategies": strategy_names(),
        "torch_threads": BENCH_THREADS,
        "rows": rows,
    }


def main() -> None:
    benchmark_main("loss", run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()

"""Benchmark 1: the pipeline (``train()`` with its real Trainer, module and data module) vs a plain loop.

"Pipeline" is ``labelsmooth.train.train`` on the config that ``python train.py <overrides>`` composes (W&B
offline logger, checkpoints, calibration, NaN guard, progress bar: the defaults), plus a callback that
timestamps the epochs. "Plain loop" is a hand-written PyTorch loop over the same data module's torch
DataLoaders and batch preprocessing, the same model config, loss, optimizer, scheduler, batch size and number
of steps, with the same seed: one training pass and one validation pass (accuracy) per epoch. Both run in
this process, alternately, with one torch thread (see ``common.BENCH_THREADS``); the first epoch of each run
is warm-up and is not timed. Reported: the median seconds per epoch (training pass, and whole epoch with
validation, checkpoints and plots) and the final validation accuracy of both (the same seed gives the same
numbers: a check that both train the same model on the same batches).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import probes
import torch
from common import (
    BENCH_THREADS,
    alternate,
    benchmark_main,
    median,
    ratio,
    use_bench_threads,
)

from labelsmooth.models.l2_penalty import apply_l2_penalties
from labelsmooth.train import compose_config as compose_train_config

SYNTHETIC_DATASET = {
    "_target_": "synthetic_data.SyntheticImageDataModule",
    "train_size": 10_000,
    "val_size": 1_000,
    "test_size": 1_000,
    "batch_size": 128,
    "eval_batch_size": 512,
}


@dataclass
class Case:
    name: str
    overrides: list[str]
    epochs: int
    dataset: dict[str, Any] | None = None
    trainer: dict[str, Any] = field(default_factory=dict)

    @property
    def train_steps(self) -> int | None:
        return self.trainer.get("limit_train_batches")

    @property
    def val_steps(self) -> int | None:
        return self.trainer.get("limit_val_batches")


def cases(quick: bool) -> list[Case]:
    epochs = 3 if quick else 4
    synthetic_steps = 4 if quick else 6
    return [
        Case("digits · MLP", ["model=mlp"], epochs),
        Case("digits · ResNet-8 v1", ["model=resnet_v1", "model.depth=8"], epochs),
        Case("digits · ResNet-20 v1", ["model=resnet_v1", "model.depth=20"], epochs),
        Case(
            "synthetic 32x32x3 · ResNet-20 v1",
            ["model=resnet_v1", "model.depth=20"],
            3,
            dataset=SYNTHETIC_DATASET,
            trainer={"limit_train_batches": synthetic_steps, "limit_val_batches": 1, "limit_test_batches": 1},
        ),
    ]


def build_config(case: Case, seed: int, output_dir: Path):
    from omegaconf import OmegaConf, open_dict

    cfg = compose_train_config([*case.overrides, f"trainer.max_epochs={case.epochs}", f"seed={seed}"], output_dir)
    with open_dict(cfg):
        if case.dataset is not None:
            cfg.dataset = OmegaConf.create(case.dataset)
        for key, value in case.trainer.items():
            cfg.trainer[key] = value
        cfg.callbacks.epoch_clock = {"_target_": "probes.EpochClock"}
    return cfg


def run_pipeline(case: Case, seed: int) -> dict[str, Any]:
    from labelsmooth.train import RunContext, train

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        cfg = build_config(case, seed, Path(tmp))
        train(cfg, RunContext(output_dir=Path(tmp)))
    clock = probes.FINISHED.pop()
    return {"train_s": clock.train_seconds(), "epoch_s": clock.epoch_seconds(), "val_acc": clock.val_acc[-1]}


def run_plain_loop(case: Case, seed: int) -> dict[str, Any]:
    """The hand-written loop: same objects from the same config, no framework."""
    import hydra
    import pytorch_lightning as pl

    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        cfg = build_config(case, seed, Path(tmp))
    pl.seed_everything(seed, workers=True)  # the same seeding call as train(), so both start alike
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.setup("fit")
    net = hydra.utils.instantiate(
        cfg.model,
        num_classes=datamodule.num_classes,
        in_channels=datamodule.in_channels,
        image_size=datamodule.image_size,
    )
    criterion = hydra.utils.instantiate(cfg.smoothing, num_classes=datamodule.num_classes)
    groups = getattr(net, "optimizer_param_groups", None)
    optimizer = hydra.utils.instantiate(cfg.optimizer)(groups() if callable(groups) else net.parameters())
    if apply_l2_penalties(optimizer):
        raise NotImplementedError("the plain loop has no L2 loss term: benchmark with an optimizer like Adam or SGD")
    scheduler = hydra.utils.instantiate(cfg.scheduler)(optimizer) if cfg.get("scheduler") else None
    # The data module's own torch DataLoaders (its in-memory batch fetch) and its batch preprocessing (what
    # Lightning calls in on_after_batch_transfer): the same data pipeline, without the framework.
    train_loader = datamodule.train_dataloader()
    val_loader = datamodule.val_dataloader()
    preprocess = getattr(datamodule, "preprocess_batch", None) or (lambda batch, train: batch)

    train_s: list[float] = []
    epoch_s: list[float] = []
    val_acc = float("nan")
    for _epoch in range(case.epochs):
        start = time.perf_counter()
        net.train()
        loss_sum = torch.zeros(())
        for step, batch in enumerate(train_loader):
            if case.train_steps is not None and step >= case.train_steps:
                break
            inputs, target = preprocess(batch, train=True)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(net(inputs), target)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        middle = time.perf_counter()
        net.eval()
        correct = torch.zeros((), dtype=torch.long)
        seen = 0
        with torch.inference_mode():
            for step, batch in enumerate(val_loader):
                if case.val_steps is not None and step >= case.val_steps:
                    break
                inputs, target = preprocess(batch, train=False)
                correct += (net(inputs).argmax(dim=-1) == target).sum()
                seen += target.numel()
        val_acc = correct.item() / max(seen, 1)
        if scheduler is not None:
            scheduler.step()
        end = time.perf_counter()
        train_s.append(middle - start)
        epoch_s.append(end - start)
    return {"train_s": train_s, "epoch_s": epoch_s, "val_acc": val_acc}


def run(quick: bool = False) -> dict[str, Any]:
    use_bench_threads()
    repetitions = 2 if quick else 3
    rows = []
    for case in cases(quick):
        runs: dict[str, list[dict[str, Any]]] = {"pipeline": [], "loop": []}

        def pipeline(case=case, runs=runs) -> float:
            runs["pipeline"].append(run_pipeline(case, seed=0))
            return 0.0

        def loop(case=case, runs=runs) -> float:
            runs["loop"].append(run_plain_loop(case, seed=0))
            return 0.0

        alternate(pipeline, loop, repetitions)
        summary: dict[str, Any] = {"case": case.name, "epochs_timed": case.epochs - 1, "repetitions": repetitions}
        if case.train_steps is not None:
            summary["train_steps_per_epoch"] = case.train_steps
        for part in ("train_s", "epoch_s"):
            ours = median([s for r in runs["pipeline"] for s in r[part][1:]])
            base = median([s for r in runs["loop"] for s in r[part][1:]])
            label = part.removesuffix("_s")
            summary[f"{label}_ours_s"] = ours
            summary[f"{label}_loop_s"] = base
            summary[f"{label}_ratio"] = ratio(ours, base)
        summary["val_acc_ours"] = median([r["val_acc"] for r in runs["pipeline"]])
        summary["val_acc_loop"] = median([r["val_acc"] for r in runs["loop"]])
        summary["acc_gap"] = abs(summary["val_acc_ours"] - summary["val_acc_loop"])
        summary["raw"] = runs
        rows.append(summary)
        print({k: v for k, v in summary.items() if k != "raw"}, flush=True)
    return {
        "title": "Pipeline vs plain PyTorch loop, seconds per epoch after warm-up",
        "goal": "ratio <= 1.10",
        "torch_threads": BENCH_THREADS,
        "rows": rows,
    }


def main() -> None:
    benchmark_main("pipeline", run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()

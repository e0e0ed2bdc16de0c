"""Benchmark 1: the pipeline (``train()`` with its real Trainer, module and data module) vs a plain loop.

"Pipeline" is ``labelsmooth.cli.train.train`` on the config that ``python train.py <overrides>`` composes (W&B
offline logger, checkpoints, calibration, NaN guard, progress bar: the defaults), plus a callback that
timestamps the epochs. "Plain loop" is a hand-written PyTorch loop over the same data module's torch
DataLoaders and batch preprocessing, the same model config, loss, optimizer, scheduler, batch size and number
of steps, with the same seed: one training pass and one validation pass (accuracy) per epoch. Both run in
this process, alternately, with one torch thread (see ``common.BENCH_THREADS``); the first epoch of each run
is warm-up and is not timed. Reported: the training pass (median seconds per epoch) and the whole epoch
(training, validation, checkpoints, logging and plots), as the mean over the timed epochs, median over
repetitions: the digits cases time 10 epochs, so the whole epoch carries its share of the validation reliability
diagram that the default config draws every 10th epoch (``callbacks.calibration.plot_every_n_epochs``); the
CIFAR-sized case times 2 epochs of 6 steps, without a diagram (one per 10 epochs would add ~0.03 s to its ~4 s
epoch). The check: the same seed gives both sides the same final validation accuracy and training loss, i.e.
they train the same model on the same batches; a difference fails the benchmark.
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
    BENCH_DIR,
    BENCH_THREADS,
    alternate,
    benchmark_main,
    median,
    ratio,
    use_bench_threads,
)
from omegaconf import OmegaConf

from labelsmooth.cli.build import compose_config as compose_train_config
from labelsmooth.models.l2_penalty import apply_l2_penalties

SYNTHETIC_DATASET = OmegaConf.to_container(OmegaConf.load(BENCH_DIR / "conf" / "dataset" / "synthetic_cifar.yaml"))


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


ACC_TOLERANCE = 1e-6
LOSS_TOLERANCE = 1e-4  # relative: the two sides sum the same float32 losses in another order


def cases(size: str) -> list[Case]:
    # full: 1 warm-up + 10 timed epochs, so one reliability diagram per 10 epochs, as in a real run
    epochs = {"full": 11, "quick": 3, "smoke": 2}[size]
    synthetic_steps = {"full": 6, "quick": 4, "smoke": 2}[size]
    every = [
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
    if size == "smoke":  # one digits case, and few synthetic images with the smallest ResNet; no figures, no W&B
        synthetic, numbers_only = every[3], ["figures=false", "logger=none"]
        few = {**SYNTHETIC_DATASET, "train_size": 512, "val_size": 128, "test_size": 128, "eval_batch_size": 128}
        return [Case("digits · MLP", ["model=mlp", *numbers_only], epochs),
                Case("synthetic 32x32x3 · ResNet-8 v1", ["model=resnet_v1", "model.depth=8", *numbers_only], 2,
                     dataset=few, trainer=synthetic.trainer)]  # fmt: skip
    return every


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
    from labelsmooth.cli.train import train
    from labelsmooth.runs.context import RunContext

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        cfg = build_config(case, seed, Path(tmp))
        train(cfg, RunContext(output_dir=Path(tmp)))
    clock = probes.FINISHED.pop()
    return {
        "train_s": clock.train_seconds(),
        "epoch_s": clock.epoch_seconds(),
        "val_acc": clock.val_acc[-1],
        "train_loss": clock.train_loss[-1] if clock.train_loss else float("nan"),
    }


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
    train_loss = float("nan")
    for _epoch in range(case.epochs):
        start = time.perf_counter()
        net.train()
        loss_sum = torch.zeros(())
        samples = 0
        for step, batch in enumerate(train_loader):
            if case.train_steps is not None and step >= case.train_steps:
                break
            inputs, target = preprocess(batch, train=True)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(net(inputs), target)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(target)  # train/loss: the mean over the epoch's samples
            samples += len(target)
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
        train_loss = loss_sum.item() / max(samples, 1)
        if scheduler is not None:
            scheduler.step()
        end = time.perf_counter()
        train_s.append(middle - start)
        epoch_s.append(end - start)
    return {"train_s": train_s, "epoch_s": epoch_s, "val_acc": val_acc, "train_loss": train_loss}


def run(size: str = "full") -> dict[str, Any]:
    use_bench_threads()
    repetitions = {"full": 3, "quick": 2, "smoke": 1}[size]
    rows = []
    for case in cases(size):
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
        # Training pass: median over every timed epoch. Whole epoch: each run's mean over its timed epochs (so an
        # epoch that draws the reliability diagram counts with its weight), median over the repetitions.
        for label, per_run in (("train", lambda r: r["train_s"][1:]), ("epoch", None)):
            if per_run is not None:
                ours = median([s for r in runs["pipeline"] for s in per_run(r)])
                base = median([s for r in runs["loop"] for s in per_run(r)])
            else:
                ours = median([mean(r["epoch_s"][1:]) for r in runs["pipeline"]])
                base = median([mean(r["epoch_s"][1:]) for r in runs["loop"]])
            summary[f"{label}_ours_s"] = ours
            summary[f"{label}_loop_s"] = base
            summary[f"{label}_ratio"] = ratio(ours, base)
        for key in ("val_acc", "train_loss"):
            summary[f"{key}_ours"] = median([r[key] for r in runs["pipeline"]])
            summary[f"{key}_loop"] = median([r[key] for r in runs["loop"]])
        loss_scale = max(1.0, abs(summary["train_loss_loop"]))
        summary["same_training"] = bool(
            abs(summary["val_acc_ours"] - summary["val_acc_loop"]) <= ACC_TOLERANCE
            and abs(summary["train_loss_ours"] - summary["train_loss_loop"]) <= LOSS_TOLERANCE * loss_scale
        )
        summary["raw"] = runs
        rows.append(summary)
        print({k: v for k, v in summary.items() if k != "raw"}, flush=True)
    return {
        "title": "Pipeline vs plain PyTorch loop, seconds per epoch after warm-up",
        "goal": "ratio <= 1.10",
        "torch_threads": BENCH_THREADS,
        "rows": rows,
    }


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def main() -> None:
    result = benchmark_main("pipeline", run, __doc__.splitlines()[0])
    different = [row["case"] for row in result["rows"] if not row["same_training"]]
    if different:
        raise SystemExit(f"the pipeline and the plain loop trained differently: {different} (see pipeline.json)")


if __name__ == "__main__":
    main()

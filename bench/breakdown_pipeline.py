"""Where an epoch of the pipeline goes, in wall-clock milliseconds (not part of ``make bench``; run
``python bench/breakdown_pipeline.py [overrides] [--epochs N] [--repeats R]``).

cProfile (``profile_pipeline.py``) inflates Python-heavy framework code; this wraps the hooks of each
component of a real ``train()`` run with ``time.perf_counter`` instead (the wrappers cost ~1 µs per call) and
prints their median milliseconds per epoch after the first epoch: the validation loop as a whole and, inside
it or around it, the metric collection, ``self.log``, checkpoints, the learning-rate monitor, the progress
bar, W&B logging, the calibration and NaN-guard callbacks. Nested entries overlap (the validation loop
contains the metric and calibration hooks), so the column does not add up to the epoch.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections import defaultdict

from bench_pipeline import Case, run_pipeline
from common import use_bench_threads

# label -> seconds, per epoch of the timed fit loops (epoch 0 of each run is warm-up and left out).
EPOCHS: list[dict[str, float]] = []
STATE = {"epoch": -1}


def timed(owner: type, method: str, label: str) -> None:
    original = getattr(owner, method)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            if STATE["epoch"] > 0:
                EPOCHS[-1][label] += time.perf_counter() - start

    setattr(owner, method, wrapper)


def track_epochs() -> None:
    """Count epochs inside ``fit``'s loop only: the sanity check, ``validate`` and ``test`` are not timed."""
    from pytorch_lightning.loops.fit_loop import _FitLoop

    run, on_advance_start = _FitLoop.run, _FitLoop.on_advance_start

    def fit_run(self, *args, **kwargs):
        STATE["epoch"] = -1
        try:
            return run(self, *args, **kwargs)
        finally:
            STATE["epoch"] = -1

    def epoch_start(self, *args, **kwargs):
        STATE["epoch"] += 1
        if STATE["epoch"] > 0:
            EPOCHS.append(defaultdict(float))
        return on_advance_start(self, *args, **kwargs)

    _FitLoop.run, _FitLoop.on_advance_start = fit_run, epoch_start


def instrument() -> None:
    import pytorch_lightning as pl
    from pytorch_lightning import LightningModule
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
    from pytorch_lightning.loggers import WandbLogger
    from pytorch_lightning.loops.evaluation_loop import _EvaluationLoop
    from pytorch_lightning.trainer.connectors.logger_connector.logger_connector import _LoggerConnector

    from labelsmooth.calibration.metrics import ClassificationMetrics
    from labelsmooth.callbacks.calibration import CalibrationCallback
    from labelsmooth.callbacks.checkpoint import BestAndLastCheckpoint
    from labelsmooth.callbacks.nan_guard import NonFiniteLossGuard
    from labelsmooth.callbacks.progress import LineProgress
    from labelsmooth.callbacks.rng_state import RandomStateCheckpoint
    from labelsmooth.module import LabelSmoothingClassifier

    timed(_EvaluationLoop, "run", "validation loop (all of it)")
    timed(LabelSmoothingClassifier, "validation_step", "  validation_step (forward + metric update)")
    timed(ClassificationMetrics, "update", "    metrics: update")
    timed(ClassificationMetrics, "compute", "  metrics: compute")
    timed(ClassificationMetrics, "reset", "  metrics: reset")
    timed(LightningModule, "log", "  self.log / log_dict")
    timed(CalibrationCallback, "on_validation_batch_end", "  calibration: collect logits")
    timed(CalibrationCallback, "on_validation_epoch_end", "  calibration: epoch end (diagram every n)")
    timed(_LoggerConnector, "log_metrics", "logger connector log_metrics (incl. W&B)")
    timed(WandbLogger, "log_metrics", "  W&B log_metrics")
    # BestAndLastCheckpoint's hooks call ModelCheckpoint's (super()): the second is inside the first.
    for hook in ("on_train_epoch_end", "on_validation_end"):
        timed(BestAndLastCheckpoint, hook, "checkpoints: BestAndLastCheckpoint hooks")
        timed(ModelCheckpoint, hook, "checkpoints: ModelCheckpoint hooks")
    timed(pl.Trainer, "save_checkpoint", "  checkpoint file writes (Trainer.save_checkpoint)")
    timed(RandomStateCheckpoint, "state_dict", "    random state into checkpoint")
    timed(LearningRateMonitor, "on_train_epoch_start", "LR monitor")
    for bar in (TQDMProgressBar, LineProgress):
        for hook in (
            "on_train_epoch_start",
            "on_train_batch_end",
            "on_train_epoch_end",
            "on_validation_start",
            "on_validation_batch_start",
            "on_validation_batch_end",
            "on_validation_end",
        ):
            if hook in vars(bar):
                timed(bar, hook, f"progress bar ({bar.__name__}, all hooks)")
    for hook in ("on_train_batch_end", "on_validation_start", "on_train_epoch_end"):
        timed(NonFiniteLossGuard, hook, "NaN guard (all hooks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", default=["model=mlp"], help="train.py overrides")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    use_bench_threads()
    track_epochs()
    instrument()
    run_pipeline(Case("warm-up", args.overrides, 2), seed=0)
    EPOCHS.clear()
    for _ in range(args.repeats):
        result = run_pipeline(Case("timed", args.overrides, args.epochs), seed=0)
        timed_epochs = EPOCHS[-(args.epochs - 1) :]
        for epoch, train_s, epoch_s in zip(timed_epochs, result["train_s"][1:], result["epoch_s"][1:], strict=True):
            epoch["epoch (EpochClock)"] = epoch_s
            epoch["training pass (EpochClock)"] = train_s
    labels = ["epoch (EpochClock)", "training pass (EpochClock)"]
    labels += [label for label in dict.fromkeys(k for e in EPOCHS for k in e) if label not in labels]
    print(f"{' '.join(args.overrides)}: ms per epoch over {len(EPOCHS)} epochs (the first of each run left out)")
    print(f"{'median':>9} {'mean':>9}")
    for label in labels:
        values = [1000 * e.get(label, 0.0) for e in EPOCHS]
        print(f"{statistics.median(values):9.2f} {statistics.fmean(values):9.2f}  {label}")


if __name__ == "__main__":
    main()

"""What the tests' own spawned processes run: a module that imports torch and the strategies alone, so that
each spawned process starts in about a second instead of importing the test modules (Lightning, Hydra, the CLI)."""

from __future__ import annotations

import torch.distributed as dist

from labelsmooth.smoothing import OnlineLabelSmoothing


def online_statistics_of_one_process(rank: int, world_size: int, port: int, batches, queue) -> None:
    """One gloo process of online label smoothing: its batch, then the epoch's end (statistics summed across
    processes); puts ``(rank, soft targets)`` on ``queue``."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    strategy = OnlineLabelSmoothing(5)
    strategy(*batches[rank])
    strategy.on_train_epoch_end()
    queue.put((rank, strategy.soft_targets.tolist()))
    dist.destroy_process_group()

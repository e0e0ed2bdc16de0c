"""Save and restore the random number generators in checkpoints, so a resumed run replays exactly."""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.callbacks import Callback

from labelsmooth.runs.generators import generator_states, set_generator_states


class RandomStateCheckpoint(Callback):
    """Stores Python's, NumPy's and torch's (CPU and CUDA) generator states in each checkpoint and restores them
    on resume (``generator_states``). Lightning does not: without this a resumed run shuffles its data differently
    from an uninterrupted one."""

    def state_dict(self) -> dict[str, Any]:
        return generator_states(cuda=torch.cuda.is_available())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks before the fit loop creates the training iterator (which draws its
        # shuffling seed from these generators) and isolates the sanity check's draws, so restoring here
        # replays the uninterrupted run.
        set_generator_states(state_dict)

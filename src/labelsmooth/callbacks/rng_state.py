"""Save and restore the random number generators in checkpoints, so a resumed run replays exactly."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from pytorch_lightning.callbacks import Callback


class RandomStateCheckpoint(Callback):
    """Stores Python's, NumPy's and torch's (CPU and CUDA) generator states in each checkpoint and restores them
    on resume. Lightning does not: without this a resumed run shuffles its data differently from an
    uninterrupted one. States are kept as tensors and plain Python values so checkpoints still load with
    ``weights_only=True``."""

    def state_dict(self) -> dict[str, Any]:
        _, keys, position, has_gauss, cached = np.random.get_state()
        python_version, python_state, python_gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "position": int(position),
                "has_gauss": int(has_gauss),
                "cached": float(cached),
            },
            "python": {"version": python_version, "state": list(python_state), "gauss": python_gauss},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks before the fit loop creates the training iterator (which draws its
        # shuffling seed from these generators) and isolates the sanity check's draws, so restoring here
        # replays the uninterrupted run.
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
        numpy_state = state_dict["numpy"]
        np.random.set_state(
            (
                "MT19937",
                numpy_state["keys"].numpy().astype(np.uint32),
                numpy_state["position"],
                numpy_state["has_gauss"],
                numpy_state["cached"],
            )
        )
        python = state_dict["python"]
        random.setstate((python["version"], tuple(python["state"]), python["gauss"]))

"""The global random generators' states as a checkpoint keeps them (a run's, ``labelsmooth.callbacks.rng_state``;
a fused group's members', ``labelsmooth.fused``), so that a resumed run draws what the uninterrupted one drew."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def generator_states(cuda: bool) -> dict[str, Any]:
    """Python's, NumPy's and torch's (CPU, and CUDA when ``cuda``) generator states, as tensors and plain Python
    values, so a checkpoint that holds them still loads with ``weights_only=True``."""
    _, keys, position, has_gauss, cached = np.random.get_state()
    python_version, python_state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if cuda else [],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": python_version, "state": list(python_state), "gauss": python_gauss},
    }


def set_generator_states(states: dict[str, Any]) -> None:
    """The generators set to ``states`` (``generator_states``); CUDA's where they hold some and CUDA is here."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached"],
        )
    )
    python = states["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))

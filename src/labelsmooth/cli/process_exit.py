"""How an app's process ends: without CPython's last garbage collection.

As it exits, CPython collects every object still alive. After ``import torch`` that is hundreds of thousands of
objects, and more with Lightning, torchmetrics, torchvision and ``torch._dynamo``: on a 2-core CPU a run's
process spent 1.1 s between its last exit handler and its end (0.4 s for ``import torch`` alone), paid by every
run and every sweep. ``gc.freeze()`` as an exit handler moves them out of the collector's reach, and the process
ends 0.2 s after its last handler (``bench/NOTES.md``).

Nothing of the apps waits for that collection: their files are written, flushed and renamed explicitly
(``labelsmooth.runs.files``), and W&B, logging and the data loaders' workers end in their own exit handlers,
which do not depend on it. Python never promised to finalise objects alive at exit
(``object.__del__``'s documentation).
"""

from __future__ import annotations

import atexit
import gc
from functools import cache

__all__ = ["end_without_final_collection"]


@cache
def end_without_final_collection() -> None:
    """Register ``gc.freeze`` to run at exit, once per process."""
    atexit.register(gc.freeze)

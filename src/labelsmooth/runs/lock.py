"""A run directory in use: the process that trains there holds an exclusive ``flock`` on ``<run>/.lock`` for as
long as it trains, and the kernel lets go of it when the process ends, killed or not. So ``resume=true`` passes
over a run that is still training, and a second training process pointed at the same directory (``resume=<dir>``
of a live run, ``hydra.run.dir=<its dir>``) is refused before it writes anything there, instead of two trainers
writing the same checkpoints. Where the file system has no ``flock`` the run goes on unlocked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from labelsmooth.runs.result_guard import ResultKept

LOCK_FILE = ".lock"


class RunInUse(ResultKept):
    """Another process trains in this directory now: what is there is left to it (no record of this run)."""


_held: dict[Path, int] = {}  # the locks this process holds, by run directory


def _take(path: Path, lock: Callable[[int, int], Any] = fcntl.flock) -> int | None:
    """An open descriptor of the lock file ``path`` that now holds the lock; None when another process holds it.
    ``OSError`` when the file cannot be made or the file system cannot lock. ``lock``: ``flock`` (a run directory's,
    which the processes a run forks share), or ``lockf``, a POSIX record lock, which a forked child (a DataLoader
    worker that outlives its job) does not inherit; locks of one process never exclude each other."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        lock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(descriptor)
        if error.errno in (errno.EACCES, errno.EAGAIN):  # another process holds it
            return None
        raise
    return descriptor


def in_use(run_dir: str | os.PathLike) -> bool:
    """Whether another process trains in ``run_dir`` now (holds its lock)."""
    path = Path(run_dir).resolve()
    if path in _held or not (path / LOCK_FILE).is_file():
        return False
    try:
        descriptor = _take(path / LOCK_FILE)
    except OSError:
        return False
    if descriptor is None:
        return True
    os.close(descriptor)  # closing the only descriptor lets go of the lock
    return False


@contextlib.contextmanager
def training_in(run_dir: str | os.PathLike, lock: bool = True) -> Iterator[None]:
    """Hold ``run_dir``'s lock while the body trains there (``lock=False``: another rank of a DDP run, whose rank
    0 holds it); ``RunInUse`` when another process holds it."""
    path = Path(run_dir).resolve()
    if not lock or path in _held:
        yield
        return
    try:
        descriptor = _take(path / LOCK_FILE)
    except OSError:  # no flock here (some network file systems), or no directory: nothing to hold
        yield
        return
    if descriptor is None:
        raise RunInUse(
            f"{path} is in use: another process is training there now (it holds {path / LOCK_FILE}). Wait for it "
            "to end, or train elsewhere (a new run without resume=, or another hydra.run.dir / hydra.sweep.dir)"
        )
    _held[path] = descriptor
    try:
        yield
    finally:
        os.close(_held.pop(path))


@contextlib.contextmanager
def first_free(directory: str | os.PathLike, names: Sequence[str]) -> Iterator[int | None]:
    """The index of the first of the lock files ``names`` in ``directory`` that no other process holds, held while
    the body runs (e.g. the GPUs of a sweep's jobs that run side by side: ``_take`` with ``lockf``); None when each is
    held, or where the file system cannot lock."""
    path = Path(directory)
    for index, name in enumerate(names):
        try:
            path.mkdir(parents=True, exist_ok=True)
            descriptor = _take(path / name, fcntl.lockf)
        except OSError:
            break
        if descriptor is not None:
            try:
                yield index
            finally:
                os.close(descriptor)
            return
    yield None

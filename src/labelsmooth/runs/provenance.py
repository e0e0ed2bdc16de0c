"""The code that computed a run's numbers, recorded in its ``metrics.json`` under ``code.*``: the versions of
labelsmooth and of the libraries its numbers depend on, and, when labelsmooth runs from a git checkout, the commit
and whether tracked files had uncommitted changes. A published number can then be traced to its code, and the
report says when it pools runs of different code (``describe_code``).

>>> describe_code({"code.labelsmooth": "0.1.0", "code.git_commit": "0123456789abcdef", "code.git_dirty": True,
...                "code.torch": "2.14.1"})
'labelsmooth 0.1.0, commit 0123456789ab with uncommitted changes, torch 2.14.1'
>>> describe_code({})
'not recorded'
"""

from __future__ import annotations

import functools
import platform
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

PREFIX = "code."
NOT_RECORDED = "not recorded"
# What ``describe_code`` says of a run, in a few words.
DESCRIBED_KEYS = tuple(f"{PREFIX}{name}" for name in ("labelsmooth", "git_commit", "git_dirty", "torch"))
# The distributions whose code computes a run's numbers (the model, the losses, the metrics, the data pipeline).
DISTRIBUTIONS = ("labelsmooth", "torch", "torchvision", "pytorch-lightning", "torchmetrics", "timm", "numpy")


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _git(directory: Path, *args: str) -> str | None:
    try:
        # --no-optional-locks: the parallel jobs of a sweep never write the checkout's index
        command = ["git", "--no-optional-locks", "-C", str(directory), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(package_dir: Path) -> tuple[str | None, bool | None]:
    """The commit of the git checkout that tracks ``package_dir`` and whether its tracked files differ from it;
    (None, None) for an installed copy (a wheel, even one installed inside a checkout) or without git."""
    if not _git(package_dir, "ls-files", "--error-unmatch", "__init__.py"):
        return None, None
    commit = _git(package_dir, "rev-parse", "HEAD")
    changes = _git(package_dir, "status", "--porcelain", "--untracked-files=no")
    return (commit.strip() or None) if commit else None, (bool(changes.strip()) if changes is not None else None)


@functools.cache
def code_record() -> dict[str, Any]:
    """``code.<distribution>`` versions, ``code.python``, ``code.git_commit`` and ``code.git_dirty``; computed once
    per process, which runs the code it imported at its start."""
    import labelsmooth

    commit, dirty = git_state(Path(labelsmooth.__file__).resolve().parent)
    versions = {f"{PREFIX}{name.replace('-', '_')}": _version(name) for name in DISTRIBUTIONS}
    return {**versions, f"{PREFIX}python": platform.python_version(), f"{PREFIX}git_commit": commit,
            f"{PREFIX}git_dirty": dirty}  # fmt: skip


def describe_code(record: Mapping[str, Any]) -> str:
    """The labelsmooth version, git state and torch version of a ``metrics.json``, in a few words."""
    version = record.get(f"{PREFIX}labelsmooth")
    if version is None:
        return NOT_RECORDED
    words = f"labelsmooth {version}"
    if commit := record.get(f"{PREFIX}git_commit"):
        words += f", commit {str(commit)[:12]}"
        if record.get(f"{PREFIX}git_dirty"):
            words += " with uncommitted changes"
    if torch := record.get(f"{PREFIX}torch"):
        words += f", torch {torch}"
    return words


def code_keys_that_differ(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``code.*`` keys whose values differ between ``records`` (a key some lack counts as differing)."""
    keys = sorted({k for r in records for k in r if k.startswith(PREFIX)})
    return [k for k in keys if len({repr(r.get(k)) for r in records}) > 1]


def device_record(trainer: Any) -> dict[str, str]:
    """``device``: where the trainer's process computed (``cpu``, or ``cuda: <the GPU's name>``); numbers computed
    on different devices may differ in their last digits."""
    device = trainer.strategy.root_device
    if device.type == "cuda":
        import torch

        return {"device": f"cuda: {torch.cuda.get_device_name(device)}"}
    return {"device": device.type}


def earlier_code(earlier: Mapping[str, Any] | None) -> dict[str, str]:
    """``code.continued_from``: the code (``describe_code``) of the earlier part of a run that is continued from a
    checkpoint, where the ``metrics.json`` it left records other code than this process runs; else nothing. A
    report then lists the job among those of other code."""
    if not earlier or not any(key.startswith(PREFIX) for key in earlier):
        return {}
    now = code_record()
    if all(earlier.get(key) == now.get(key) for key in now):
        return {}
    return {f"{PREFIX}continued_from": describe_code(earlier)}

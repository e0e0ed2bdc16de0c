"""The project's own errors, and short forms of an error's message.

A ``LabelsmoothError`` is a problem the user can fix (a configuration that cannot work, missing or damaged data or
files): the command-line apps report it as one line without a traceback. Every other exception is a bug, and
shows its traceback. The classes also derive from the built-in error a library user would catch
(``ConfigurationError`` is a ``ValueError``), so ``labelsmooth.smoothing`` in a plain PyTorch loop behaves as
before. Pure Python, importable from every layer.
"""

from __future__ import annotations

import errno
import numbers
import os
import re
from collections.abc import Iterable
from typing import Any


class LabelsmoothError(Exception):
    """A configuration, data or file problem, with a message that says what to do about it."""


class ConfigurationError(LabelsmoothError, ValueError):
    """A run configuration that cannot work (a parameter out of range, options that do not go together)."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word`` (``difflib``'s similarity ratio >= 0.6), None where none is: the name that
    every "did you mean" of the apps offers.

    >>> closest("sed", ["seed", "resume"]), closest("xyz", ["seed"])
    ('seed', None)
    """
    from difflib import get_close_matches

    close = get_close_matches(word, list(choices), n=1)
    return close[0] if close else None


SEED_RANGE = (0, 2**32 - 1)  # numpy's and Lightning's seed_everything's range (uint32)


def whole_number(key: str, value: object, minimum: int, what: str = "", maximum: int | None = None) -> int:
    """``value`` when it is an integer >= ``minimum`` and <= ``maximum`` (a bool is not), else a
    ``ConfigurationError`` naming the config key, the value and the range, with ``what`` the key means.

    >>> whole_number("n_bins", 15, 1)
    15
    >>> whole_number("n_bins", 0, 1, "the bins of the calibration errors")
    Traceback (most recent call last):
    ...
    labelsmooth.errors.ConfigurationError: n_bins=0 must be an integer >= 1 (the bins of the calibration errors)
    """
    number = int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigurationError(f"{key}={value!r} must be an integer {allowed}" + (f" ({what})" if what else ""))
    return number


def non_negative_number(key: str, value: object, what: str = "") -> float:
    """``value`` as a float when it is a finite number >= 0 (a bool is not), else a ``ConfigurationError`` naming
    the config key, the value and the range, with ``what`` the key means.

    >>> non_negative_number("model.l2", 1e-4)
    0.0001
    >>> non_negative_number("model.l2", -1, "the kernel regulariser's factor")
    Traceback (most recent call last):
    ...
    labelsmooth.errors.ConfigurationError: model.l2=-1 must be a finite number >= 0 (the kernel regulariser's factor)
    """
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else float("nan")
    if not 0 <= number < float("inf"):
        raise ConfigurationError(f"{key}={value!r} must be a finite number >= 0" + (f" ({what})" if what else ""))
    return number


def check_class_index_shapes(logits: Any, target: Any, num_classes: int | None = None, owner: str = "") -> int:
    """Refuse, in one ``ValueError`` that names ``owner`` and the shapes, what a loss or a metric of (N, K) logits
    and (N,) class indices would otherwise broadcast or truncate without a word: logits that are not (N, K) with
    K = ``num_classes`` (when given), a target that is not N integers (an (N, 1) column, float "indices"). Reads
    shapes and types alone (a loss calls it every step); returns K."""
    import torch  # imported already wherever logits are checked

    where = f"{owner}: " if owner else ""
    for name, value in (("logits", logits), ("target", target)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{where}{name} is a {type(value).__name__}; expected a torch.Tensor (torch.as_tensor)")
    classes = num_classes if num_classes is not None else (logits.shape[-1] if logits.dim() == 2 else None)
    if logits.dim() != 2 or logits.shape[1] != classes:
        raise ValueError(f"{where}logits have shape {tuple(logits.shape)}; expected (N, K) with K = {classes} classes")
    if target.dim() != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{where}target has shape {tuple(target.shape)}; expected ({logits.shape[0]},): one class index per row "
            f"of the logits {tuple(logits.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype.is_complex or str(target.dtype) == "torch.bool":
        raise ValueError(f"{where}target has dtype {target.dtype}; expected integer class indices in [0, {classes})")
    return classes


def check_class_indices(logits: Any, target: Any, num_classes: int | None = None, owner: str = "") -> None:
    """``check_class_index_shapes``, and, for a target on the CPU, every class in [0, K): ``argmax == y`` would
    count a label of 10 as a wrong prediction, torch's cross entropy drops -100. A target on another device is not
    read, as that would wait for the device."""
    classes = check_class_index_shapes(logits, target, num_classes, owner)
    if target.device.type == "cpu" and target.numel():
        low, high = (int(v) for v in target.aminmax())
        if low < 0 or high >= classes:
            where = f"{owner}: " if owner else ""
            raise ValueError(
                f"{where}target holds class {low if low < 0 else high}; class indices must lie in [0, {classes})"
            )


def check_outcomes(correct: Any, owner: str = "") -> None:
    """Refuse, in a ``ValueError`` that names ``owner``, outcomes other than 0 and 1 (booleans are such): class
    indices or scores given for correctness would give a number. Takes a NumPy array or a tensor."""
    if not bool(((correct == 0) | (correct == 1)).all()):
        raise ValueError(f"{owner + ': ' if owner else ''}correct must hold booleans or 0/1 values")


def first_line(error: BaseException) -> str:
    r"""The first non-empty line of an error's message, without a trailing period (messages are embedded);
    the error's type name when it has no message. A first line that ends in a colon announces the lines below
    it, and is completed with the last of them (torchvision's download errors end with the network's answer).

    >>> first_line(RuntimeError("Error downloading a.gz:\nTried https://x/a.gz, got:\nHTTP Error 404: Not Found"))
    'Error downloading a.gz: HTTP Error 404: Not Found'
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[-1]}".rstrip(".")
    return lines[0].rstrip(".")


SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)\. ")  # ". " that is not the end of "e.g." or "i.e."


def first_sentence(error: BaseException, limit: int = 200) -> str:
    """The first sentence of :func:`first_line`, at most ``limit`` characters (torch's load errors run on for a
    paragraph); "e.g." and "i.e." do not end a sentence.

    >>> first_sentence(ValueError("Damaged (e.g. cut short). Use another"))
    'Damaged (e.g. cut short)'
    """
    sentence = SENTENCE_END.split(first_line(error), maxsplit=1)[0]
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def describe(error: BaseException, sentence: bool = False) -> str:
    """``Type: first line of the message`` (``sentence``: its :func:`first_sentence`), or the type alone when there
    is no message.

    >>> describe(EOFError()), describe(OSError("disk full. Free some space"), sentence=True)
    ('EOFError', 'OSError: disk full')
    """
    text = first_sentence(error) if sentence else first_line(error)
    return type(error).__name__ if text == type(error).__name__ else f"{type(error).__name__}: {text}"


class FigureSkippedWarning(UserWarning):
    """A figure of a finished run could not be drawn: the run keeps its results and says so in one line. The test
    suite turns this warning into an error (``pyproject.toml``: ``filterwarnings``), so that a bug in the drawing
    code fails the tests rather than passing as a warning."""


class MissingFileError(LabelsmoothError, FileNotFoundError):
    """A file the configuration names does not exist (a weights file, an annotation file)."""


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
HOW_TO_CONTINUE = (
    "free some space, then run the same command again with resume=true (a sweep: with resume_sweep=true and "
    "hydra.sweep.dir=<its directory>)"
)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` is the file system's "no space left" (ENOSPC) or "disk quota exceeded" (EDQUOT)."""
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


class DiskFullError(LabelsmoothError, OSError):
    """A write failed because the file system of ``path`` is full (or the quota is spent): the message names the
    path and the free space there (``what``), then how a run continues; the partial file was removed."""

    def __init__(self, path: str | os.PathLike, cause: OSError | None = None) -> None:
        self.path = os.fspath(path)
        reason = cause.strerror if cause is not None and cause.strerror else "No space left on device"
        self.what = f"{reason} writing {self.path} ({free_space(self.path)} free there)"
        super().__init__(cause.errno if cause is not None else errno.ENOSPC, f"{self.what}: {HOW_TO_CONTINUE}")

    def __str__(self) -> str:
        return str(self.strerror)


def free_space(path: str | os.PathLike) -> str:
    """The free space of the file system holding ``path`` (or its nearest existing parent), e.g. ``1.2 MB``."""
    import shutil
    from pathlib import Path

    for folder in (Path(path), *Path(path).parents):
        if folder.exists():
            free: float = shutil.disk_usage(folder).free  # bytes, then divided into larger units below
            break
    else:
        return "unknown"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if free < 1000 or unit == "TB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1000
    return "unknown"  # pragma: no cover

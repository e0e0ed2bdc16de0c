"""The project's own errors, and short forms of an error's message.

A ``LabelsmoothError`` is a problem the user can fix (a configuration that cannot work, missing or damaged data or
files): the command-line apps report it as one line without a traceback. Every other exception is a bug, and
shows its traceback. The classes also derive from the built-in error a library user would catch
(``ConfigurationError`` is a ``ValueError``), so ``labelsmooth.smoothing`` in a plain PyTorch loop behaves as
before. Pure Python, importable from every layer.
"""

from __future__ import annotations


class LabelsmoothError(Exception):
    """A configuration, data or file problem, with a message that says what to do about it."""


class ConfigurationError(LabelsmoothError, ValueError):
    """A run configuration that cannot work (a parameter out of range, options that do not go together)."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error's message, without a trailing period (messages are embedded);
    the error's type name when it has no message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__).rstrip(".")


def first_sentence(error: BaseException, limit: int = 200) -> str:
    """The first sentence of :func:`first_line`, at most ``limit`` characters (torch's load errors run on for a
    paragraph)."""
    sentence = first_line(error).split(". ", 1)[0]
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def describe(error: BaseException) -> str:
    """``Type: first line of the message``, or the type alone when there is no message."""
    line = first_line(error)
    return type(error).__name__ if line == type(error).__name__ else f"{type(error).__name__}: {line}"


class FigureSkippedWarning(UserWarning):
    """A figure of a finished run could not be drawn: the run keeps its results and says so in one line. The test
    suite turns this warning into an error (``pyproject.toml``: ``filterwarnings``), so that a bug in the drawing
    code fails the tests rather than passing as a warning."""


class MissingFileError(LabelsmoothError, FileNotFoundError):
    """A file the configuration names does not exist (a weights file, an annotation file)."""

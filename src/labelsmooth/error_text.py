"""Short forms of an error's message, for one-line user errors that embed another library's error."""

from __future__ import annotations


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

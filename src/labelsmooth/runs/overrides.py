"""Command-line overrides (Hydra's ``overrides.task``: ``key=value``, ``+key=value``, ``~key``), parsed once.

``metrics.json`` records a job's ``overrides``; resume, the result guard, the sweep resume and the report compare
them. Which overrides define a run and which only say how to start it or where its outputs go is decided here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Keys that say to continue a run, and those that say how to start one, not what it trains.
CONTINUE_KEYS = frozenset({"resume", "resume_sweep"})
START_KEYS = CONTINUE_KEYS | {"ckpt_path"}
# Keys, with the keys under them, that say where a run's outputs go and how they are shown or logged, not what it
# trains.
OUTPUT_KEYS = ("paths", "logger", "figures", "tags", "save_predictions", "predictions_max_values")
OUTPUT_KEYS += ("trainer.enable_progress_bar",)


def is_output_key(key: str) -> bool:
    """Whether ``key`` is one of ``OUTPUT_KEYS`` or under one.

    >>> is_output_key("paths.log_dir"), is_output_key("logger"), is_output_key("figures"), is_output_key("seed")
    (True, True, True, False)
    """
    return any(key == name or key.startswith(f"{name}.") for name in OUTPUT_KEYS)


def parse_override(override: str) -> tuple[str, str | None]:
    """``(key, value)`` of one override; the value is None for a deletion without one (``~key``).

    >>> parse_override("+smoothing.gamma=0.8")
    ('smoothing.gamma', '0.8')
    >>> parse_override("~logger")
    ('logger', None)
    """
    key, equals, value = override.partition("=")
    return key.strip().lstrip("+~"), (value if equals else None)


def parse_command_line(overrides: Sequence[str]) -> list[Any]:
    """Hydra's parse of command-line ``overrides`` (its ``Override`` objects); one that Hydra's grammar refuses is
    a ``ConfigurationError`` of one line naming it, where Hydra printed its parser's words and a caret."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from labelsmooth.errors import ConfigurationError

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as error:
        lines, lexer = error.message.splitlines(), "LexerNoViableAltException: "
        reason = lines[1] if lines[0].startswith("Error parsing override") and len(lines) > 1 else lines[0]
        if lines[0].startswith(lexer) and len(lines) > 1:  # the next line's caret marks the character
            at = len(lines[1]) - len(lexer) - 1
            reason = f"{error.override[at]!r} at character {at + 1}" if 0 <= at < len(error.override) else "a character"
        raise ConfigurationError(
            f"{error.override} cannot be parsed as an override ({reason}): give key=value, quoting a value that holds "
            "spaces, brackets or braces (key='...'); the grammar: https://hydra.cc/docs/advanced/override_grammar/basic"
        ) from None


def override_key(override: str) -> str:
    """The key of one override, without Hydra's ``+`` / ``++`` / ``~`` prefix."""
    return parse_override(override)[0]


def override_value(overrides: Iterable[str], key: str) -> str | None:
    """The value the overrides give ``key`` (the last one wins), None when they do not set it."""
    value = None
    for override in overrides:
        name, given = parse_override(override)
        if name == key:
            value = given
    return value


def added_top_level_keys(overrides: Iterable[str]) -> list[tuple[str, str | None]]:
    """``(key, value)`` of the overrides that add a top-level key with Hydra's ``+`` (not ``++``, which may set an
    existing one): ``+sed=3`` adds ``sed``; ``+smoothing.gamma=0.8`` is not top-level.

    >>> added_top_level_keys(["+sed=3", "seed=1", "++foo=2", "+smoothing.gama=0.8", "+hydra/callbacks=x"])
    [('sed', '3')]
    """
    added = []
    for override in overrides:
        key, value = parse_override(override)
        if override.startswith("+") and not override.startswith("++") and not any(c in key for c in "./"):
            added.append((key, value))
    return added


def added_top_level_nodes(config: Mapping[str, Any], overrides: Iterable[str]) -> list[tuple[str, str | None]]:
    """``(key, value)`` of the ``+key=value`` overrides whose top-level node of the composed ``config`` only such
    overrides made: ``+foo.bar=1`` adds ``foo`` (every key of it is one they added); ``+trainer.max_steps=5`` adds
    nothing at the top.

    >>> added_top_level_nodes({"foo": {"bar": 1}, "trainer": {"max_epochs": 2, "max_steps": 5}},
    ...                       ["+foo.bar=1", "+trainer.max_steps=5"])
    [('foo.bar', '1')]
    """
    added: dict[str, dict[str, tuple[str, str | None]]] = {}
    for override in overrides:
        key, value = parse_override(override)
        if override.startswith("+") and not override.startswith("++") and "." in key and "/" not in key:
            top, rest = key.split(".", 1)
            added.setdefault(top, {})[rest.split(".", 1)[0]] = (key, value)
    return [
        next(iter(subs.values()))
        for top, subs in added.items()
        if isinstance(node := config.get(top), Mapping) and set(node.keys()) <= set(subs)
    ]


def job_overrides(task_overrides: Sequence[str]) -> list[str]:
    """The overrides that define a job as ``metrics.json`` records them: sorted, less ``resume_sweep`` itself."""
    return sorted(o for o in task_overrides if override_key(o) != "resume_sweep")


def comparable_overrides(overrides: Iterable[str]) -> frozenset[str]:
    """The overrides that define a run, less those that only say how to start it (``START_KEYS``) or where its
    outputs go and how they are shown (``OUTPUT_KEYS``)."""
    return frozenset(o for o in overrides if override_key(o) not in START_KEYS and not is_output_key(override_key(o)))


def same_job(recorded: Sequence[str], overrides: Sequence[str]) -> bool:
    """Whether two override lists define the same run."""
    return comparable_overrides(recorded) == comparable_overrides(overrides)

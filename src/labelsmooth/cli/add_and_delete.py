"""``+key=value`` and ``~key`` on the command line, checked against the config's files before Hydra composes.

Hydra adds with ``+key=value`` only a key the config lacks (or holds as null), and deletes with ``~key`` (or
``~key=value``) only a key the config holds (with that value). It refuses the others while it composes, in three or
four lines and a hint about ``HYDRA_FULL_ERROR``; the apps refuse them first, in one line that says what to write
instead. Hydra's own config (``hydra.*``) and the group options (``~model``) are left to Hydra; a key that ``+``
adds is checked once the config is composed (``labelsmooth.cli.checks`` refuses the ones nothing reads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from labelsmooth.errors import ConfigurationError

_UNKNOWN = object()


def held_value(node: Any, path: list[str]) -> Any:
    """The value at ``path`` in the config node ``node`` as its file writes it; ``KeyError`` where a plain node on
    the way lacks the key, ``_UNKNOWN`` where the files cannot tell (a ``defaults`` list, an unread file)."""
    for key in path:
        if not isinstance(node, dict) or "defaults" in node:
            return _UNKNOWN
        node = node[key]
    return node


def refuse_an_addition_or_deletion_hydra_refuses(
    override: Any, parsed: Sequence[Any], top_level: list[str], node_of: Callable[[str], Any], config_dir: Path
) -> None:
    """Refuse ``+name.a.b=value`` of a key the config holds with a value, ``~name.a.b`` of one it lacks or holds as
    null, and ``~name.a.b=value`` of one whose value is another, as Hydra would after composing; and ``~name`` of a
    top-level setting that the config reads (``read_by``), which failed where it was read. A key that another
    override of the command line (``parsed``) also changes is left to Hydra, which applies them in turn."""
    name, _, key = override.key_or_group.partition(".")
    if override.is_sweep_override() and override.is_delete() or (not key and (config_dir / name).is_dir()):
        return
    if any(other is not override and other.key_or_group == override.key_or_group for other in parsed):
        return
    if not key and name not in top_level:
        held: Any = KeyError(name)
    else:
        try:
            held = held_value(node_of(name), key.split(".") if key else [])
        except KeyError as missing:
            held = missing
    line, dotted = override.input_line, override.key_or_group
    # a top-level setting that the config reads (the checks after composing word a missing key below it)
    if (
        override.is_delete()
        and not key
        and not isinstance(held, KeyError)
        and (reader := read_by(dotted, top_level, node_of))
    ):
        raise ConfigurationError(
            f"{line}: a run needs {dotted} ({reader} reads it); give it a value instead of removing it"
        )
    if held is _UNKNOWN or isinstance(held, str) and "${" in held:  # an interpolation: Hydra's to resolve
        return
    value = None if override.is_sweep_override() else override.value()  # a sweep adds each value in its job
    if override.is_add() and held is not None and not isinstance(held, KeyError):
        if isinstance(value, (dict, list)):  # Hydra merges it into the value there
            return
        raise ConfigurationError(
            f"{line}: {dotted} is in the config already ({dotted}={held}): write {line[1:]} to set it (+ adds a "
            f"key the config lacks; ++{line[1:]} adds it or sets it)"
        )
    if override.is_delete() and (held is None or isinstance(held, KeyError)):
        state = "null" if held is None else "not in the config"
        raise ConfigurationError(f"{line}: {dotted} is {state}, so there is nothing to delete")
    # the same type or no comparison: PyYAML reads 1e-3 as a text, where Hydra's parser and OmegaConf read a number
    if override.is_delete() and type(value) is type(held) and value != held and isinstance(held, (str, int, float)):
        raise ConfigurationError(
            f"{line}: {dotted} is {held} in the config, not {value}: write ~{dotted} to delete it whatever its value"
        )


def read_by(dotted: str, top_level: list[str], node_of: Callable[[str], Any]) -> str | None:
    """The key whose value reads ``dotted`` through an interpolation (``callbacks.calibration.n_bins: ${n_bins}``),
    among the chosen options' nodes and Hydra's (``hydra.run.dir`` reads ``${resume}``); None where none does."""

    def strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from strings(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for value in node:
                yield from strings(value, path)
        elif isinstance(node, str):
            yield path, node

    for name in [*top_level, "hydra"]:
        for path, text in strings(node_of(name), name):
            if "${" + dotted + "}" in text or "${" + dotted + "." in text:
                return path
    return None

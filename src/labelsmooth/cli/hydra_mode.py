"""Hydra's run mode known without composing the config twice.

Before it runs an app, Hydra composes the whole config once only to read ``hydra.mode``
(``hydra._internal.hydra.Hydra.get_mode``), then composes it again to run: ~0.15 s of every launch, and of every
in-process run of the test suite. The mode is None (Hydra then runs as ``-m`` says) unless an override, the primary
config or an option the config chooses sets it (``hydra.mode: MULTIRUN`` in the ``sweep`` presets).
``mode_read_from_the_files`` answers None without composing where the files show that none can (read once per
process), and leaves every other case to Hydra.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from labelsmooth.cli.argv import command_line_overrides

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where PyYAML has it: the same result


def yaml_files(config_dir: Path) -> Iterator[tuple[Path, str]]:
    """Each config file under ``config_dir``, symbolic links to folders followed as Hydra follows them (its path
    relative to ``config_dir``) and its text."""
    for folder, _, names in sorted(os.walk(config_dir, followlinks=True)):
        for name in sorted(n for n in names if n.endswith(".yaml")):
            path = Path(folder, name)
            yield path.relative_to(config_dir), path.read_text(errors="replace")


def group_named(key: str) -> str:
    """The top-level config group that an override key or a ``defaults`` entry names: ``+sweep@_global_`` and
    ``override /sweep`` name ``sweep``, ``experiment/grid`` and ``/sweep/strategies`` name ``experiment`` and
    ``sweep``, ``trainer.max_epochs`` names ``trainer``.

    >>> [group_named(k) for k in ("+sweep@_global_", "override /sweep", "optional db/mysql", "trainer.max_epochs")]
    ['sweep', 'sweep', 'db', 'trainer']
    """
    key = key.strip().removeprefix("override ").removeprefix("optional ").strip().lstrip("+~/")
    return re.split(r"[@/.]", key, maxsplit=1)[0]


def hydra_keys(node: object) -> set[str]:
    """The keys a config file's content may set in Hydra's node, in whatever package: its top-level keys (a file
    in the ``hydra`` package) and those of its ``hydra`` node, ``hydra.mode`` as a dotted key included."""
    if not isinstance(node, dict):
        return set()
    keys = {str(key).removeprefix("hydra.") for key in node}
    hydra = node.get("hydra")
    if isinstance(hydra, dict):
        return keys | set(hydra)
    return keys | {"mode"} if hydra is not None else keys  # an interpolation may stand for any node


@functools.cache
def groups_setting_the_mode(config_dir: Path) -> frozenset[str] | None:
    """The top-level config groups with an option (in any subfolder, in any package) that may set ``hydra.mode``
    (``sweep``, ``hparams_search``); None when a primary config may set it, a file adds a config search path, a
    ``defaults`` list anywhere chooses an option of such a group, or a file cannot be read: only Hydra can tell
    then."""
    try:
        groups, nodes = set(), []
        for path, text in yaml_files(config_dir):
            nodes.append(node := yaml.load(text, Loader=LOADER))
            keys = hydra_keys(node)
            if "searchpath" in keys or ("mode" in keys and len(path.parts) == 1):
                return None
            if "mode" in keys:
                groups.add(path.parts[0])
        for node in nodes:
            entries = node.get("defaults") if isinstance(node, dict) else None
            for entry in entries if isinstance(entries, list) else []:
                named = entry.items() if isinstance(entry, dict) else [(entry, "")]
                if any(group_named(str(key)) in groups and option is not None for key, option in named):
                    return None
    except (OSError, yaml.YAMLError):
        return None
    return frozenset(groups)


def mode_is_unset(argv: Sequence[str], config_dir: Path) -> bool:
    """Whether nothing on the command line ``argv`` or in ``config_dir`` may set ``hydra.mode``: no override names
    ``hydra.mode``, adds a config search path or names a group with an option that may set it
    (``groups_setting_the_mode``), and the configs come from ``config_dir`` and Hydra alone (no ``--config-dir``,
    no search-path plugin)."""
    overrides = command_line_overrides(argv)
    if overrides is None:  # --config-dir and the like: other files
        return False
    keys = {override.split("=", 1)[0].lstrip("+~") for override in overrides}
    if {"hydra", "hydra.mode", "hydra.searchpath"} & {key.split("@")[0] for key in keys}:
        return False
    groups = groups_setting_the_mode(config_dir)
    if groups is None or groups & {group_named(key) for key in keys}:
        return False
    return not configs_elsewhere(config_dir)


@functools.cache
def configs_elsewhere(config_dir: Path) -> bool:
    """Whether Hydra reads configs besides its own and ``config_dir``'s, which this module does not read: a
    search-path plugin's files, or a plugin's structured configs in a group of their own."""
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_store import ConfigStore

    search_path = create_config_search_path(str(config_dir)).get_path()  # discovers the plugins, which may store
    stored = {name for name in ConfigStore.instance().repo if name not in ("hydra", "_dummy_empty_config_.yaml")}
    return bool(stored) or any(element.provider not in ("hydra", "main", "schema") for element in search_path)


@contextlib.contextmanager
def mode_read_from_the_files(argv: Sequence[str], config_dir: Path) -> Iterator[None]:
    """Within: Hydra's ``get_mode`` answers None (the mode is unset) without composing the config, where
    ``mode_is_unset``; elsewhere, and in a Hydra without ``get_mode``, Hydra composes as it does."""
    from hydra._internal.hydra import Hydra

    composing = getattr(Hydra, "get_mode", None)
    if composing is None or not mode_is_unset(argv, config_dir):
        yield
        return
    Hydra.get_mode = lambda self, config_name, overrides: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        Hydra.get_mode = composing  # type: ignore[method-assign]


def refuse_a_sweep_outside_multirun(argv: Sequence[str], parsed: Sequence[Any], config_dir: Path) -> None:
    """A sweep over several values (``seed=0,1``, ``seed=range(3)``: ``parsed``, Hydra's ``Override`` objects) in a
    command line without ``-m`` whose files set no mode either (``mode_is_unset``): one line, where Hydra printed
    its own over several lines. A sweep of a group's options needs ``-m`` beside a preset that sets the mode too:
    Hydra builds the defaults list before the preset's mode applies."""
    from labelsmooth.errors import ConfigurationError

    if "-m" in argv or "--multirun" in argv:
        return
    unset = mode_is_unset(argv, config_dir)
    for override in parsed:
        if override.is_sweep_override() and (unset or (config_dir / override.key_or_group).is_dir()):
            key = override.get_key_element()
            one = f"give one value (a list is {key}=[...], a text with commas {key}='...')"
            if (config_dir / override.key_or_group).is_dir():
                one = "choose one option" + ("" if unset else " (a preset's mode comes after Hydra chose the options)")
            raise ConfigurationError(
                f"{override.input_line} is a sweep over several values: add -m (--multirun) to run one job per "
                f"value, or {one}"
            )

"""Hydra's run mode known without composing the config twice.

Before it runs an app, Hydra composes the whole config once only to read ``hydra.mode``
(``hydra._internal.hydra.Hydra.get_mode``), then composes it again to run: ~0.15 s of every launch, and of every
in-process run of the test suite. The mode is None (Hydra then runs as ``-m`` says) unless an override or a config
file that the command line chooses sets it (``hydra.mode: MULTIRUN`` in the ``sweep`` presets);
``mode_read_from_the_files`` answers None without composing where neither can, and leaves every other case to
Hydra.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

from labelsmooth.cli.argv import command_line_overrides

MODE_KEY = re.compile(r"\bmode\s*:")
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where PyYAML has it: the same result


def yaml_files(config_dir: Path) -> Iterator[tuple[Path, str]]:
    """Each config file under ``config_dir`` (its path relative to it) and its text."""
    for path in sorted(config_dir.rglob("*.yaml")):
        yield path.relative_to(config_dir), path.read_text(errors="replace")


@functools.cache
def groups_setting_the_mode(config_dir: Path) -> frozenset[str] | None:
    """The config groups with an option that sets ``hydra.mode`` (``sweep``, ``hparams_search``); None when a
    primary config sets it, a ``defaults`` list chooses an option of such a group, or a file that may do either
    cannot be read: only Hydra can tell then."""
    try:
        groups = set()
        for path, text in yaml_files(config_dir):
            node = yaml.load(text, Loader=LOADER) if MODE_KEY.search(text) else None
            hydra = node.get("hydra") if isinstance(node, dict) else None
            in_hydra_group = path.parts[0] == "hydra" and isinstance(node, dict) and "mode" in node
            if in_hydra_group or (isinstance(hydra, dict) and "mode" in hydra):
                if len(path.parts) == 1:
                    return None
                groups.add(path.parent.as_posix())
        for _, text in yaml_files(config_dir):
            chooses = "defaults" in text and any(group in text for group in groups)
            node = yaml.load(text, Loader=LOADER) if chooses else None
            entries = node.get("defaults") if isinstance(node, dict) else None
            for entry in entries if isinstance(entries, list) else []:
                for key, option in entry.items() if isinstance(entry, dict) else ():
                    group = str(key).replace("override ", "").replace("optional ", "").strip().lstrip("/")
                    if group.split("@")[0] in groups and option is not None:
                        return None
    except (OSError, yaml.YAMLError):
        return None
    return frozenset(groups)


def mode_is_unset(argv: Sequence[str], config_dir: Path) -> bool:
    """Whether nothing on the command line ``argv`` or in ``config_dir`` sets ``hydra.mode``: no override names it,
    adds a config search path or chooses an option of a group that sets it (``groups_setting_the_mode``), and the
    configs come from ``config_dir`` alone."""
    overrides = command_line_overrides(argv)
    if overrides is None:  # --config-dir and the like: other files
        return False
    keys = {override.split("=", 1)[0].lstrip("+~") for override in overrides}
    groups = groups_setting_the_mode(config_dir)
    return groups is not None and not {"hydra.mode", "hydra.searchpath", *groups} & keys


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

"""Config-group options and settings named on the command line, checked before Hydra composes the config.

Hydra answers an option that does not exist (``smoothing=gamm``) with some twenty lines: the options, then its
config search path; and a setting the option's file does not have (``smoothing.gama=0.8``) with five, which do
not say which settings there are. The apps check the command line against the files under ``conf/`` first, and
refuse in one line:

- each ``group=option`` (and each option of a ``group=a,b`` sweep) of the project's own groups whose option has no
  file, with the group's options and the closest of them;
- each ``group.key=value`` whose option's file has no ``key`` and whose class (``_target_``) takes no parameter
  ``key``, with the parameters it takes and the closest of them (as ``labelsmooth.cli.schema`` words it);
- each ``key=value`` whose key the primary config (``train.yaml``, ``eval.yaml``) does not have, with its
  top-level settings and the closest of them (``+key=value`` adds a key: ``labelsmooth.cli.checks`` refuses the
  ones nothing reads, once the config is composed).

What this cannot see is left to Hydra: its own groups (``hydra/launcher=...``, whose options also come from
plugins), command lines that add config sources (``hydra.searchpath``, ``--config-dir``, ``--config-path``,
``--config-name``) or select a config that may change other groups' options (a ``# @package _global_`` group:
``experiment=``, ``sweep=``, ``debug=``), options whose file inherits settings from another (a ``defaults`` list),
glob and range sweeps, and any override Hydra's parser refuses. ``HYDRA_FULL_ERROR=1`` skips the checks, so
Hydra's own report shows.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from labelsmooth.errors import ConfigurationError

# Hydra's command-line options (hydra._internal.utils.get_args_parser) that take a value, and those that make it
# read configs from elsewhere than the project's conf/.
OPTIONS_WITH_A_VALUE = frozenset({"--cfg", "-c", "--package", "-p"})
OTHER_CONFIG_SOURCES = frozenset(
    {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}
)
INFO_TOPICS = frozenset({"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"})


def command_line_overrides(argv: Sequence[str]) -> list[str] | None:
    """The overrides among a Hydra app's arguments (``-m``, ``--cfg job`` and the like left out); None when the
    command line reads configs from elsewhere than ``conf/``.

    >>> command_line_overrides(["smoothing=gamma", "--cfg", "job", "seed=0,1", "-m"])
    ['smoothing=gamma', 'seed=0,1']
    >>> command_line_overrides(["--config-dir", "/elsewhere", "smoothing=gamma"]) is None
    True
    """
    overrides: list[str] = []
    skip_next = False
    for index, argument in enumerate(argv):
        if skip_next:
            skip_next = False
        elif argument.split("=", 1)[0] in OTHER_CONFIG_SOURCES:
            return None
        elif argument in OPTIONS_WITH_A_VALUE:
            skip_next = True
        elif argument in ("--info", "-i"):
            skip_next = index + 1 < len(argv) and argv[index + 1] in INFO_TOPICS
        elif not argument.startswith("-"):
            overrides.append(argument)
    return overrides


def group_options(group_dir: Path) -> list[str]:
    """The options of a config group: its YAML files, those in subfolders as ``folder/name``."""
    return sorted(path.relative_to(group_dir).with_suffix("").as_posix() for path in group_dir.rglob("*.yaml"))


def refuse_unknown_options(argv: Sequence[str], config_dir: Path, config_name: str) -> None:
    """A ``ConfigurationError`` for the first ``group=option`` of ``argv`` whose option is not a file of
    ``config_dir/group``, then for the first ``group.key=value`` that its option cannot take (see the module
    docstring for what is left to Hydra); ``config_name``: the app's primary config (``train``, ``eval``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = command_line_overrides(argv)
    if overrides is None or any(o.lstrip("+~").startswith("hydra.searchpath") for o in overrides):
        return
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # Hydra reports what it cannot parse
        return
    refuse_unknown_group_options(parsed, config_dir)
    refuse_unknown_group_settings(parsed, config_dir, config_name)


def refuse_unknown_group_options(parsed: Sequence[Any], config_dir: Path) -> None:
    """Refuse the first ``group=option`` (or option of a ``group=a,b`` sweep) of Hydra's parsed overrides whose
    option has no file in ``config_dir/group``."""
    from hydra.core.override_parser.types import ValueType

    for override in parsed:
        group = override.key_or_group
        group_dir = config_dir / group
        if override.is_delete() or group.startswith("hydra") or not group_dir.is_dir():
            continue
        if not override.is_sweep_override():
            values = [override.get_value_element_as_str()]
        elif override.value_type in (ValueType.SIMPLE_CHOICE_SWEEP, ValueType.CHOICE_SWEEP):
            values = list(override.sweep_string_iterator())
        else:
            continue
        options = group_options(group_dir)
        for value in values:
            if value != "null" and value not in options:
                # the options at the value's depth: model=mlpp lists model's files, not those of model/mezzini2019
                shown = [o for o in options if o.count("/") == value.count("/")] or options
                close = get_close_matches(value, shown, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigurationError(
                    f"{group}={value} is not an option of {group}: the options are {', '.join(shown)}{hint}"
                )


def refuse_unknown_group_settings(parsed: Sequence[Any], config_dir: Path, config_name: str) -> None:
    """Refuse the first ``key=value`` (or ``++key=value``) whose key the primary config ``config_name`` does not
    have, and the first ``group.key=value`` whose option's class takes no ``key``; nothing when a global-package
    group is named, since it may change the options and add keys."""
    import yaml

    from labelsmooth.cli.schema import constructor_parameters, unknown_parameter

    groups = {o.key_or_group for o in parsed if not o.key_or_group.startswith("hydra")}
    groups = {group for group in groups if (config_dir / group).is_dir()}
    if any(is_global_group(config_dir / group) for group in groups):
        return
    primary = yaml.safe_load((config_dir / f"{config_name}.yaml").read_text()) or {}
    chosen = {k: v for entry in primary.get("defaults", []) if isinstance(entry, dict) for k, v in entry.items()}
    chosen.update({o.key_or_group: o.value() for o in parsed if o.key_or_group in groups and not o.is_delete()})
    top_level = sorted({*primary, *chosen} - {"defaults", "hydra"})
    for override in parsed:
        group, _, key = override.key_or_group.partition(".")
        if override.is_add() or override.is_delete():
            continue
        if not key and group not in top_level and not group.startswith("hydra") and "/" not in group:
            close = get_close_matches(group, top_level, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigurationError(
                f"{override.input_line} is not a setting ({hint}the top-level settings are {', '.join(top_level)})"
            )
        option = chosen.get(group)
        if not key or "." in key or not isinstance(option, str):
            continue
        path = config_dir / group / f"{option}.yaml"
        node = yaml.safe_load(path.read_text()) if path.is_file() else None
        if not isinstance(node, dict) or key in node or "defaults" in node or not isinstance(node.get("_target_"), str):
            continue
        parameters = constructor_parameters(node["_target_"])
        value = override.input_line.partition("=")[2] if override.input_line else ""
        if parameters is not None and (refusal := unknown_parameter(group, node["_target_"], parameters, key, value)):
            raise refusal


def is_global_group(group_dir: Path) -> bool:
    """Whether a group's options are ``# @package _global_`` configs, which may set any group's option."""
    return any("@package _global_" in path.read_text() for path in group_dir.rglob("*.yaml"))


def with_known_options(config_dir: Path, config_name: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """A decorator of a ``hydra.main`` app: ``refuse_unknown_options`` on its command line first, so an unknown
    option or setting ends the process with one line and exit code 1, before Hydra composes anything."""

    def decorate(app: Callable[[], Any]) -> Callable[[], Any]:
        @functools.wraps(app)
        def main() -> Any:
            if not os.environ.get("HYDRA_FULL_ERROR"):
                try:
                    refuse_unknown_options(sys.argv[1:], config_dir, config_name)
                except ConfigurationError as error:
                    print(f"{type(error).__name__}: {error}", file=sys.stderr)
                    raise SystemExit(1) from None
            return app()

        return main

    return decorate

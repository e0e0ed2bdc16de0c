"""Config-group options named on the command line, checked before Hydra composes the config.

Hydra answers an option that does not exist (``smoothing=gamm``) with some twenty lines: the options, then its
config search path. The apps check each ``group=option`` (and each option of a ``group=a,b`` sweep) of the
project's own groups against the option files under ``conf/`` first, and refuse an unknown one in one line with
the group's options and the closest of them. What this check cannot see is left to Hydra: its own groups
(``hydra/launcher=...``, whose options also come from plugins), command lines that add config sources
(``hydra.searchpath``, ``--config-dir``, ``--config-path``, ``--config-name``), glob and range sweeps, and any
override Hydra's parser refuses. ``HYDRA_FULL_ERROR=1`` skips the check, so Hydra's own report shows.
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


def refuse_unknown_options(argv: Sequence[str], config_dir: Path) -> None:
    """A ``ConfigurationError`` for the first ``group=option`` of ``argv`` whose option is not a file of
    ``config_dir/group`` (see the module docstring for what is left to Hydra)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    overrides = command_line_overrides(argv)
    if overrides is None or any(o.lstrip("+~").startswith("hydra.searchpath") for o in overrides):
        return
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # Hydra reports what it cannot parse
        return
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


def with_known_options(config_dir: Path) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """A decorator of a ``hydra.main`` app: ``refuse_unknown_options`` on its command line first, so an unknown
    option ends the process with one line and exit code 1, before Hydra composes anything."""

    def decorate(app: Callable[[], Any]) -> Callable[[], Any]:
        @functools.wraps(app)
        def main() -> Any:
            if not os.environ.get("HYDRA_FULL_ERROR"):
                try:
                    refuse_unknown_options(sys.argv[1:], config_dir)
                except ConfigurationError as error:
                    print(f"{type(error).__name__}: {error}", file=sys.stderr)
                    raise SystemExit(1) from None
            return app()

        return main

    return decorate

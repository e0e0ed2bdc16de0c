"""A Hydra app's command line read as Hydra reads it: its flags (with their values) apart from its overrides."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from labelsmooth.errors import ConfigurationError, closest

# Hydra's command-line options (hydra._internal.utils.get_args_parser) that take a value, and those that make it
# read configs from elsewhere than the project's conf/.
OPTIONS_WITH_A_VALUE = frozenset({"--cfg", "-c", "--package", "-p"})
OTHER_CONFIG_SOURCES = frozenset(
    {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}
)
INFO_TOPICS = frozenset({"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"})
FLAGS = frozenset(
    {"--help", "-h", "--hydra-help", "--version", "--resolve", "--run", "-r", "--multirun", "-m"}
    | {"--shell-completion", "-sc", "--info", "-i"}
    | OPTIONS_WITH_A_VALUE
    | OTHER_CONFIG_SOURCES
)


def flags_first(argv: Sequence[str], script: str = "train.py") -> list[str]:
    """Hydra's flags (with their values) moved before the overrides, whose order is kept: Hydra's parser reads the
    overrides as one run of arguments, so ``seed=1 -m seed=2`` would end in its usage and "unrecognized
    arguments"; a flag it does not have is refused in one line.

    >>> flags_first(["smoothing=gamma", "-m", "seed=0,1", "--cfg", "job"])
    ['-m', '--cfg', 'job', 'smoothing=gamma', 'seed=0,1']
    """
    flags: list[str] = []
    overrides: list[str] = []
    arguments = iter(argv)
    for argument in arguments:
        if not argument.startswith("-"):
            overrides.append(argument)
            continue
        name = argument.split("=", 1)[0]
        if name not in FLAGS:
            hint = f"did you mean {near}? " if (near := closest(name, sorted(FLAGS))) else ""
            raise ConfigurationError(
                f"{argument} is not an option of {script} ({hint}python {script} --help lists the options and the "
                "config groups)"
            )
        flags.append(argument)
        takes_value = name in OPTIONS_WITH_A_VALUE | OTHER_CONFIG_SOURCES and "=" not in argument
        if takes_value or name in ("--info", "-i"):
            value = next(arguments, None)
            if value is not None and (takes_value or value in INFO_TOPICS):
                flags.append(value)
            elif value is not None:
                overrides.append(value)
    return flags + overrides


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


ENVIRONMENT_INTERPOLATION = re.compile(r"\$\{oc\.env:\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")
DIRECTORY_SETTINGS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir")


def directory_settings(config_dir: Path) -> set[str]:
    """The settings a run's or a sweep's directory is made of: Hydra's (``DIRECTORY_SETTINGS``) and those their
    values in ``hydra/default.yaml`` name (``paths.log_dir``, ``resume``)."""
    import yaml

    hydra = yaml.safe_load((config_dir / "hydra" / "default.yaml").read_text()) or {}
    values = [
        str((hydra.get(part) or {}).get(key, ""))
        for part, key in (("run", "dir"), ("sweep", "dir"), ("sweep", "subdir"))
    ]
    named = {name for value in values for name in re.findall(r"\$\{([A-Za-z_][\w.]*)\}", value)}
    return set(DIRECTORY_SETTINGS) | {name for name in named if not name.startswith("hydra.")}


def refuse_unset_environment(overrides: Sequence[str], config_dir: Path) -> None:
    """A setting of the run's or sweep's directory (``directory_settings``) that reads an environment variable
    that is not set (``${oc.env:NAME}`` without a default), in one line: Hydra resolves it in the launching
    process, making the directory, and would fail in a long traceback. The other settings are resolved in the job,
    whose environment may set the variable (``hydra.job.env_set``, a SLURM node's)."""
    reading = [override for override in overrides if ENVIRONMENT_INTERPOLATION.search(override)]
    settings = directory_settings(config_dir) if reading else set()  # no file read at start-up without one
    for override in reading:
        if override.split("=", 1)[0].lstrip("+~") not in settings:
            continue
        for name in ENVIRONMENT_INTERPOLATION.findall(override):
            if name not in os.environ:
                raise ConfigurationError(
                    f"{override}: the environment variable {name} is not set (set it, or give a default: "
                    f"${{oc.env:{name},<value>}})"
                )

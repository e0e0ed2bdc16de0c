"""Config-group options and settings named on the command line, checked before Hydra composes the config.

Hydra answers an option that does not exist (``smoothing=gamm``) with some twenty lines: the options, then its
config search path; and a setting the config does not have (``smoothing.gama=0.8``) with five, which do not say
which settings there are. The apps check the command line first, and refuse in one line:

- each ``group=option`` (and each option of a ``group=a,b`` sweep) of the project's own groups whose option has no
  file, with the group's options and the closest of them; and each option of Hydra's own groups
  (``hydra/launcher=fusd``) that neither a file here nor Hydra and its plugins provide;
- each ``key=value`` whose key the primary config (``train.yaml``, ``eval.yaml``) does not have, with its
  top-level settings and the closest of them (``+key=value`` and ``~key``: ``labelsmooth.cli.add_and_delete``);
- each ``name.key=value`` whose node has no ``key``: at a ``_target_`` node whose class takes no parameter ``key``,
  with the parameters it takes (as ``labelsmooth.cli.signatures`` words it), or with the node's keys;
- each ``hydra.key=value`` that Hydra's own config or the chosen launcher lacks (``labelsmooth.cli.hydra_settings``).

The options' settings are read from their files under ``conf/``. Where the files cannot tell, Hydra composes the
command line's group options alone (~0.2 s): a ``# @package _global_`` group is named (``experiment=``,
``sweep=``, ``debug=``: it may change other groups' options and add keys), or an option inherits its keys through
a ``defaults`` list (``trainer=gpu``, ``model=resnet20_v1``). What this cannot see is left to Hydra: sweeps of its
own groups (``hydra/launcher=a,b``, which it refuses in one line), command lines that add config sources
(``hydra.searchpath``, ``--config-dir``, ``--config-path``, ``--config-name``), sweeps of a global-package group,
glob and range sweeps, and any override Hydra's parser refuses. ``HYDRA_FULL_ERROR=1`` skips the checks, so
Hydra's own report shows.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from labelsmooth.cli.add_and_delete import refuse_an_addition_or_deletion_hydra_refuses
from labelsmooth.cli.argv import command_line_overrides, flags_first, refuse_unset_environment
from labelsmooth.cli.hydra_mode import mode_read_from_the_files, refuse_a_sweep_outside_multirun
from labelsmooth.cli.hydra_settings import refuse_unknown_hydra_settings
from labelsmooth.errors import ConfigurationError, closest
from labelsmooth.runs.overrides import parse_command_line


def group_options(group_dir: Path) -> list[str]:
    """The options of a config group: its YAML files, those in subfolders as ``folder/name``."""
    return sorted(path.relative_to(group_dir).with_suffix("").as_posix() for path in group_dir.rglob("*.yaml"))


def refuse_unknown_options(argv: Sequence[str], config_dir: Path, config_name: str) -> None:
    """A ``ConfigurationError`` for the first ``group=option`` of ``argv`` whose option is not a file of
    ``config_dir/group``, then for the first ``group.key=value`` that its option cannot take (see the module
    docstring for what is left to Hydra); ``config_name``: the app's primary config (``train``, ``eval``)."""
    overrides = command_line_overrides(argv)
    if overrides is None or any(o.lstrip("+~").startswith("hydra.searchpath") for o in overrides):
        return
    parsed = parse_command_line(overrides)
    refuse_a_sweep_outside_multirun(argv, parsed, config_dir)
    refuse_groups_the_app_lacks(parsed, config_dir, config_name)
    groups = [config_dir / o.key_or_group for o in parsed if (config_dir / o.key_or_group).is_dir()]
    refuse_unknown_hydra_settings(parsed, config_dir, names_a_recipe=lambda: any(map(is_global_group, groups)))
    refuse_unknown_group_options(parsed, config_dir)
    options = [o for o in parsed if not o.key_or_group.startswith("hydra") and (config_dir / o.key_or_group).is_dir()]
    composed = functools.cache(lambda: composed_config(options, config_dir, config_name))  # read by both, if needed
    refuse_settings_the_default_lacks(parsed, config_dir, config_name, composed)
    refuse_unknown_group_settings(parsed, config_dir, config_name, composed)


def default_options(config_dir: Path, config_name: str) -> dict[str, Any]:
    """The option that the primary config ``config_name`` chooses for each group (its defaults list; None: none)."""
    primary = yaml.safe_load((config_dir / f"{config_name}.yaml").read_text()) or {}
    entries = [entry for entry in primary.get("defaults") or [] if isinstance(entry, dict)]
    return {str(group).removeprefix("override ").lstrip("/"): option for e in entries for group, option in e.items()}


def refuse_groups_the_app_lacks(parsed: Sequence[Any], config_dir: Path, config_name: str) -> None:
    """Refuse ``group=option`` of a group the primary config's defaults list lacks (``eval.py model=resnet_v1``:
    an evaluation takes the checkpoint's own model), and ``+group=option`` of one it has ("Multiple values")."""
    groups = set(default_options(config_dir, config_name))
    for override in parsed:
        group = override.key_or_group
        if override.is_delete() or group.startswith("hydra") or not (config_dir / group).is_dir() or override.package:
            continue
        if group in groups and override.is_add():
            raise ConfigurationError(
                f"{override.input_line}: the config has the group {group} already; write {override.input_line[1:]} "
                "(without +) to choose another"
            )
        if group in groups:
            continue
        raise ConfigurationError(
            f"{override.input_line} is not a setting of {config_name}.py: it has no config group {group!r} (its "
            f"groups are {', '.join(sorted(groups))})"
        )


def refuse_settings_the_default_lacks(
    parsed: Sequence[Any], config_dir: Path, config_name: str, composed: Callable[[], Any]
) -> None:
    """Refuse ``group.key=value`` beside a sweep of the group when a swept option lacks ``key``, or the default
    option does (``smoothing=gamma,focal smoothing.gamma=0.5``: Hydra composes the sweep's base config with the
    default first, and stops in six lines that suggest ``+``, which the jobs then refuse; ``++`` sets it in each).
    A sweep preset's sweeps (``sweep=strategies smoothing.epsilon=0.2``) are read from ``composed()``."""
    from hydra.core.override_parser.types import ChoiceSweep

    def sweeps(overrides: Sequence[Any]) -> dict[str, list[str]]:  # a glob of options: Hydra's to expand
        options = [o for o in overrides if (config_dir / o.key_or_group).is_dir()]
        return {o.key_or_group: list(o.sweep_string_iterator()) for o in options if isinstance(o.value(), ChoiceSweep)}

    swept = sweeps(parsed)
    where = dict.fromkeys(swept, "swept here")
    sets_a_group_key = any(
        (config_dir / o.key_or_group.split(".")[0]).is_dir() for o in parsed if "." in o.key_or_group
    )
    recipes = " ".join(
        o.input_line for o in parsed if sets_a_group_key and is_global_group(config_dir / o.key_or_group)
    )
    if recipes:
        preset = ((cfg := composed()) and cfg.hydra.sweeper.get("params")) or {}
        in_preset = sweeps(parse_command_line([f"{key}={value}" for key, value in preset.items()]))
        where = {**dict.fromkeys(in_preset, f"swept by {recipes}"), **where}
        swept = {**in_preset, **swept}  # the command line's lists replace the preset's
    if not swept:
        return
    chosen = {} if recipes else default_options(config_dir, config_name)  # a recipe may choose other defaults

    def lacks(group: str, option: str, key: str) -> bool:
        node = yaml.safe_load((config_dir / group / f"{option}.yaml").read_text()) or {}
        return isinstance(node, dict) and "defaults" not in node and key not in node

    for override in parsed:
        group, _, key = override.key_or_group.partition(".")
        if group not in swept or not key or override.is_add() or override.is_force_add() or override.is_delete():
            continue
        first = key.split(".")[0]
        if without := [option for option in swept[group] if lacks(group, option, first)]:
            options = ", ".join(f"{group}={option}" for option in without)
            raise ConfigurationError(f"{override.input_line} is not a setting of {options}, {where[group]}")
        if chosen.get(group) is not None and lacks(group, chosen[group], first):
            raise ConfigurationError(
                f"{override.input_line}: a sweep's config is composed first with the default {group}={chosen[group]},"
                f" which has no {first}: write ++{override.input_line} to set it in every job of the sweep"
            )


def refuse_unknown_group_options(parsed: Sequence[Any], config_dir: Path) -> None:
    """Refuse the first ``group=option`` (or option of a ``group=a,b`` sweep) of Hydra's parsed overrides whose
    option has no file in ``config_dir/group``."""
    from hydra.core.override_parser.types import ValueType

    for override in parsed:
        group = override.key_or_group
        group_dir = config_dir / group
        if group.startswith("hydra/") and not override.is_delete() and not override.is_sweep_override():
            value = option_of(override)
            if not (group_dir / f"{value}.yaml").is_file() and (options := hydra_group_options(group, config_dir)):
                refuse_unknown_value(group, value, options)
            continue
        if override.is_delete() or group.startswith("hydra") or not group_dir.is_dir():
            continue
        if not override.is_sweep_override():
            values = [option_of(override)]
        elif override.value_type in (ValueType.SIMPLE_CHOICE_SWEEP, ValueType.CHOICE_SWEEP):
            values = list(override.sweep_string_iterator())
        else:
            continue
        options = group_options(group_dir)
        for value in values:
            refuse_unknown_value(group, value, options)


def option_of(override: Any) -> str:
    """The option a ``group=option`` override names, unquoted (``model='mlp'`` names ``mlp``, as Hydra reads it)."""
    value = override.value()
    return value if isinstance(value, str) else override.get_value_element_as_str()


def refuse_unknown_value(group: str, value: str, options: list[str]) -> None:
    """Refuse ``group=value`` unless ``value`` is one of ``options``, naming them and the closest (``null`` too:
    Hydra cannot compose it; ``~group`` removes a group)."""
    if value in options:
        return
    # the options at the value's depth: model=mlpp lists model's files, not those of model/mezzini2019
    shown = [o for o in options if o.count("/") == value.count("/")] or options
    hint = f" (did you mean {near}?)" if (near := closest(value, shown)) else ""
    raise ConfigurationError(f"{group}={value} is not an option of {group}: the options are {', '.join(shown)}{hint}")


def hydra_group_options(group: str, config_dir: Path) -> list[str]:
    """The options of Hydra's own config group ``group`` (``hydra/launcher``): the project's files, Hydra's and
    those its plugins register, as Hydra lists them (its plugins are discovered once per process, so Hydra's start
    reuses them); empty when Hydra cannot tell (its own error then names the group)."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.utils import create_config_search_path
    from hydra.core.object_type import ObjectType

    try:
        repository = ConfigRepository(create_config_search_path(str(config_dir)))
        return sorted(repository.get_group_options(group, ObjectType.CONFIG))
    except Exception:
        return []


def refuse_unknown_group_settings(
    parsed: Sequence[Any], config_dir: Path, config_name: str, composed: Callable[[], Any]
) -> None:
    """Refuse the first ``key=value`` (or ``++key=value``) whose key the primary config ``config_name`` does not
    have, and the first ``group.key=value`` whose node lacks ``key`` (``unknown_key``). The options and their
    settings are read from the files; Hydra composes the command line's group options alone (~0.2 s) when the
    files cannot tell: a global-package group is named (it may change the options and add keys), or a setting's
    option inherits keys through a ``defaults`` list (``composed()``: that config, None where it cannot be)."""
    groups = {o.key_or_group for o in parsed if not o.key_or_group.startswith("hydra")}
    groups = {group for group in groups if (config_dir / group).is_dir()}
    per_job = False  # a sweep preset's sweeper parameters may choose, per job, the option a swept value needs
    if any(is_global_group(config_dir / group) for group in groups):
        known = config_options(cfg := composed())
        per_job = cfg is not None and bool(cfg.hydra.sweeper.get("params"))
    else:
        known = file_options(parsed, groups, config_dir, config_name, composed)
    if known is None:
        return
    top_level, node_of = known
    retargeted = {o.key_or_group.split(".")[0] for o in parsed if o.key_or_group.endswith("._target_")}
    for override in parsed:
        name, _, key = override.key_or_group.partition(".")
        if name.startswith("hydra") or "/" in name or name in retargeted:  # another class: checked once composed
            continue
        if override.is_add() or override.is_delete():
            refuse_an_addition_or_deletion_hydra_refuses(override, parsed, top_level, node_of, config_dir)
            if override.is_delete() or not key or not isinstance(node_of(name), dict):  # +key: checked once composed
                continue
        if per_job and override.is_sweep_override():  # Hydra composes the command line's settings alone first
            continue
        if name not in top_level:
            hint = f"did you mean {near}? " if (near := closest(name, top_level)) else ""
            raise ConfigurationError(
                f"{override.input_line} is not a setting ({hint}the top-level settings are {', '.join(top_level)})"
            )
        if key and (refusal := unknown_key(override, name, key.split("."), node := node_of(name))):
            if node is None and (config_dir / name).is_dir():  # a group chosen as null: which to choose
                options = ", ".join(group_options(config_dir / name))
                raise ConfigurationError(f"{refusal}; choose an option first, {name}=<option> (the options: {options})")
            first = key.split(".")[0]
            if (config_dir / name).is_dir() and (takers := options_with_key(config_dir / name, first)):
                example = first if first in takers else takers[0]
                raise ConfigurationError(
                    f"{refusal}; the options of {name} that take {first}: {', '.join(takers)} (e.g. "
                    f"{name}={example} {override.input_line})"
                )
            raise refusal


def options_with_key(group_dir: Path, key: str) -> list[str]:
    """The options of a config group whose file sets ``key`` (``smoothing.gamma=0.8`` without ``smoothing=gamma``:
    the options that take ``gamma``), read from the files at the error's time."""

    def keys(path: Path) -> set[str]:
        try:
            node = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            return set()
        return set(node) if isinstance(node, dict) else set()

    return [option for option in group_options(group_dir) if key in keys(group_dir / f"{option}.yaml")]


def unknown_key(override: Any, name: str, path: list[str], node: Any) -> ConfigurationError | None:
    """The refusal of the setting ``name.a.b=value`` (``path``: ``[a, b]``) when the config node ``node`` of
    ``name`` lacks a key on the way (Hydra's struct mode refuses it), with the keys it has, or at a ``_target_``
    node with the parameters its class takes; None when it may be a setting. A node that inherits its keys through
    a ``defaults`` list is left to Hydra; ``+name.a.b=value`` (``++``) may add a key that the class takes."""
    from labelsmooth.cli.signatures import constructor_parameters, unknown_parameter

    line, value = override.input_line, override.input_line.partition("=")[2]
    adds = override.is_add() or override.is_force_add()
    for key in path:
        if node is None:
            return ConfigurationError(f"{line} is not a setting: {name} is null, so it has no key {key!r}")
        if isinstance(node, (str, int, float, bool)):
            return ConfigurationError(f"{line} is not a setting: {name} is a value ({node}), which has no keys")
        if not isinstance(node, dict) or "defaults" in node or key in node and isinstance(node.get("_target_"), str):
            return None
        if key in node:
            node, name = node[key], f"{name}.{key}"
            continue
        target = node.get("_target_")
        parameters = constructor_parameters(target) if isinstance(target, str) else None
        if parameters is not None and (refusal := unknown_parameter(name, target, parameters, key, value)):
            return refusal
        if adds:
            return None
        if parameters is not None and key in parameters:
            return ConfigurationError(
                f"{line} is not in the config: {name} has no key {key!r}, which {target.rsplit('.', 1)[-1]} takes; "
                f"add it with +{name}.{key}={value}"
            )
        keys = sorted(str(k) for k in node if not str(k).startswith("_"))
        hint = f"; did you mean {name}.{near}?" if (near := closest(key, keys)) else ""
        return ConfigurationError(
            f"{line} is not a setting: {name} has no key {key!r} (its keys: {', '.join(keys)}){hint}"
        )
    return None


UNREAD = object()  # the node of an option whose file cannot be read: unknown_key leaves it to Hydra
# The top-level keys, and the node of a top-level key (a group's chosen option, or the primary config's node).
KnownOptions = tuple[list[str], Callable[[str], Any]]


def file_options(
    parsed: Sequence[Any], groups: set[str], config_dir: Path, config_name: str, composed: Callable[[], Any]
) -> KnownOptions:
    """What the primary config and the command line's ``group=option`` choose, read from the files; the node of an
    option whose file has a ``defaults`` list comes from ``composed()`` (None: left to Hydra)."""
    primary = yaml.safe_load((config_dir / f"{config_name}.yaml").read_text()) or {}
    chosen = default_options(config_dir, config_name)
    chosen.update({o.key_or_group: o.value() for o in parsed if o.key_or_group in groups and not o.is_delete()})

    @functools.cache  # each node read once: the checks of a command line ask for the same ones (read-only)
    def node_of(name: str) -> Any:
        option = chosen.get(name, "")
        if name not in chosen or option is None:
            return primary.get(name)
        path = config_dir / name / f"{option}.yaml"
        node = yaml.safe_load(path.read_text()) if isinstance(option, str) and path.is_file() else None
        if not isinstance(node, dict):
            return UNREAD
        if "defaults" in node and (known := config_options(composed())) is not None:
            return known[1](name)
        return node

    return sorted({*primary, *chosen} - {"defaults", "hydra"}), node_of


def composed_config(group_overrides: Sequence[Any], config_dir: Path, config_name: str) -> Any:
    """The config that Hydra composes from the command line's ``group=option`` overrides alone; None when they
    sweep a group or do not compose (Hydra reports why), or when Hydra is already initialised in this process."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if any(o.is_sweep_override() for o in group_overrides) or GlobalHydra.instance().is_initialized():
        return None
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(config_name, [o.input_line for o in group_overrides], return_hydra_config=True)
    except Exception:
        return None
    return cfg


def config_options(cfg: Any) -> KnownOptions | None:
    """The top-level keys and nodes of a composed config ``cfg`` (None: nothing known)."""
    from omegaconf import OmegaConf

    if cfg is None:
        return None
    groups = {group for group in cfg.hydra.runtime.choices if "/" not in group}

    @functools.cache  # each node read once: the checks of a command line ask for the same ones (read-only)
    def node_of(name: str) -> Any:
        return OmegaConf.to_container(cfg[name], resolve=False) if OmegaConf.is_dict(cfg.get(name)) else cfg.get(name)

    return sorted({*cfg, *groups} - {"hydra"}), node_of


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
                    sys.argv[1:] = flags_first(sys.argv[1:], Path(sys.argv[0]).name)
                    refuse_unknown_options(sys.argv[1:], config_dir, config_name)
                    refuse_unset_environment(sys.argv[1:], config_dir)
                except ConfigurationError as error:
                    print(f"{type(error).__name__}: {error}", file=sys.stderr)
                    raise SystemExit(1) from None
            try:
                with mode_read_from_the_files(sys.argv[1:], config_dir):
                    return app()
            except KeyboardInterrupt as error:  # outside a job: the process that launched a sweep's jobs elsewhere
                from labelsmooth.cli.errors import interruption_outside_a_job

                raise interruption_outside_a_job(error) from None

        return main

    return decorate

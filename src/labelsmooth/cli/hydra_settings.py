"""Settings of Hydra's own config (``hydra.*``) named on the command line, checked before Hydra composes.

Hydra answers a key its config does not have (``hydra.run.dirr=x``) with four lines ("Key 'dirr' not in
'RunDir'") that do not say which keys there are, and a launcher setting the chosen launcher does not take with
five. The apps refuse both in one line: the keys of Hydra's structured config (``hydra.conf.HydraConf``) where it
fixes them, and the settings of a launcher that a file of the project defines. Nodes whose keys are open (Hydra's
``callbacks``, ``job.env_set``), the sweeper's and a plugin launcher's settings, and ``+``, ``++`` and ``~`` are
left to Hydra.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from labelsmooth.errors import ConfigurationError, closest


def refuse_unknown_hydra_settings(parsed: Sequence[Any], config_dir: Path, names_a_recipe: Callable[[], bool]) -> None:
    """Refuse the first ``hydra.a.b=value`` whose key Hydra's config lacks (``unknown_hydra_key``), then the first
    ``hydra.launcher.<key>`` the chosen launcher does not take (``refuse_unknown_launcher_settings``)."""
    for override in parsed:
        if override.key_or_group.startswith("hydra.") and not (
            override.is_add() or override.is_force_add() or override.is_delete()
        ):
            unknown_hydra_key(override)
    refuse_unknown_launcher_settings(parsed, config_dir, names_a_recipe)


def unknown_hydra_key(override: Any) -> None:
    """Walk ``hydra.a.b`` down Hydra's structured config while its nodes are dataclasses (their keys are fixed);
    refuse a key one of them lacks, with the keys it has and the closest of them."""
    import typing

    from hydra.conf import HydraConf

    node: Any = HydraConf
    path = override.key_or_group.split(".")
    for depth, key in enumerate(path[1:], start=1):
        if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
            return
        try:
            types = typing.get_type_hints(node)  # Hydra's module writes its annotations as strings
        except Exception:  # annotations this Hydra version cannot resolve: its own check remains
            return
        keys = sorted(field.name for field in dataclasses.fields(node))
        if key not in keys:
            hint = f"; did you mean {'.'.join(path[:depth])}.{near}?" if (near := closest(key, keys)) else ""
            raise ConfigurationError(
                f"{override.input_line} is not a setting: {'.'.join(path[:depth])} has no key {key!r} (its keys: "
                f"{', '.join(keys)}){hint}"
            )
        node = types.get(key)


def refuse_unknown_launcher_settings(
    parsed: Sequence[Any], config_dir: Path, names_a_recipe: Callable[[], bool]
) -> None:
    """Refuse ``hydra.launcher.<key>=...`` that the chosen launcher does not take, where a file of the project
    defines it (``fused``) or it is the basic one (no settings); Hydra's five lines named neither.
    ``names_a_recipe()``: whether the command line names a global-package group (``experiment=``, ``sweep=``), which
    may choose the launcher (its files are read only when a launcher setting is given)."""
    if not any(o.key_or_group.startswith("hydra.launcher.") for o in parsed) or names_a_recipe():
        return  # a recipe (experiment=, sweep=) may choose the launcher; no launcher setting: no file is read
    chosen = [o for o in parsed if o.key_or_group == "hydra/launcher" and not o.is_delete()]
    if any(o.is_sweep_override() for o in chosen):  # Hydra refuses a sweep of its own config in one line
        return
    launcher = chosen[-1].get_value_element_as_str() if chosen else "basic"
    files = {path.stem: yaml.safe_load(path.read_text()) for path in (config_dir / "hydra" / "launcher").glob("*.yaml")}
    node = files.get(launcher, {} if launcher == "basic" else None)
    if not isinstance(node, dict) or "defaults" in node:  # a plugin's launcher (joblib, submitit): Hydra's to check
        return
    settings = sorted(k for k in node if not k.startswith("_"))
    for override in parsed:
        parts = override.key_or_group.split(".")
        if parts[:2] == ["hydra", "launcher"] and len(parts) > 2 and parts[2] not in settings:
            known = f"its settings are {', '.join(settings)}" if settings else "it takes no settings"
            owners = [name for name, other in files.items() if isinstance(other, dict) and parts[2] in other]
            known += f" ({parts[2]} is a setting of hydra/launcher={', '.join(sorted(owners))})" if owners else ""
            raise ConfigurationError(f"{override.input_line} is not a setting of hydra/launcher={launcher}: {known}")

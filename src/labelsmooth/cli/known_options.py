"""What the command line's settings are checked against (``labelsmooth.cli.options``): the top-level keys of the
config and the node of each, read from the files under ``conf/`` where they can tell, else from the config that
Hydra composes from the command line's group options alone (~0.15 s).

The files tell for the primary config, a group's chosen option without a ``defaults`` list, and a chosen option of
a ``# @package _global_`` group that has neither a ``defaults`` list nor a ``hydra`` node (``debug=fast``: it only
sets keys, which are merged into the nodes they name, as Hydra merges them). A global option with a ``defaults``
list (``experiment=``: it may choose other groups' options) or a ``hydra`` node (``sweep=``: its sweeper may
choose options per job) is composed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

UNREAD = object()  # the node of an option whose file cannot be read: unknown_key leaves it to Hydra
# The top-level keys, and the node of a top-level key (a group's chosen option, or the primary config's node).
KnownOptions = tuple[list[str], Callable[[str], Any]]


def default_options(config_dir: Path, config_name: str) -> dict[str, Any]:
    """The option that the primary config ``config_name`` chooses for each group (its defaults list; None: none)."""
    primary = yaml.safe_load((config_dir / f"{config_name}.yaml").read_text()) or {}
    entries = [entry for entry in primary.get("defaults") or [] if isinstance(entry, dict)]
    return {str(group).removeprefix("override ").lstrip("/"): option for e in entries for group, option in e.items()}


def is_global_group(group_dir: Path) -> bool:
    """Whether a group's options are ``# @package _global_`` configs, which may set any group's option."""
    return any("@package _global_" in path.read_text() for path in group_dir.rglob("*.yaml"))


def plain_global_options(parsed: Sequence[Any], groups: set[str], config_dir: Path) -> list[dict] | None:
    """The files of the command line's chosen options of global-package ``groups`` in its order, where each only
    sets keys (no ``defaults`` list, no ``hydra`` node, not swept); None where one does more, or cannot be read."""
    nodes = []
    for override in parsed:
        if override.key_or_group not in groups or override.is_delete():
            continue
        option = override.value()
        path = config_dir / override.key_or_group / f"{option}.yaml"
        if override.is_sweep_override() or not isinstance(option, str) or not path.is_file():
            return None
        node = yaml.safe_load(path.read_text())
        if not isinstance(node, dict) or {"defaults", "hydra"} & set(node):
            return None
        nodes.append(node)
    return nodes


def merged(base: Any, update: Any) -> Any:
    """``update`` merged into ``base`` as OmegaConf merges two nodes: mappings key by key, anything else
    replaced."""
    if not isinstance(base, Mapping) or not isinstance(update, Mapping):
        return update
    return {**base, **{key: merged(base.get(key), value) for key, value in update.items()}}


def file_options(
    parsed: Sequence[Any],
    groups: set[str],
    config_dir: Path,
    config_name: str,
    composed: Callable[[], Any],
    global_groups: Collection[str] = (),
    global_nodes: Sequence[dict] = (),
) -> KnownOptions:
    """What the primary config and the command line's ``group=option`` choose, read from the files, with the keys
    that the options of ``global_groups`` set (``global_nodes``: ``plain_global_options``) merged in; the node of
    an option whose file has a ``defaults`` list comes from ``composed()`` (None: left to Hydra)."""
    primary = yaml.safe_load((config_dir / f"{config_name}.yaml").read_text()) or {}
    chosen = default_options(config_dir, config_name)
    chosen.update({o.key_or_group: o.value() for o in parsed if o.key_or_group in groups and not o.is_delete()})

    def option_node(name: str) -> Any:
        option = chosen.get(name, "")
        if name in global_groups:
            return None  # its keys are the top level's, not a node of its own
        if name not in chosen or option is None:
            return primary.get(name)
        path = config_dir / name / f"{option}.yaml"
        node = yaml.safe_load(path.read_text()) if isinstance(option, str) and path.is_file() else None
        if not isinstance(node, dict):
            return UNREAD
        if "defaults" in node and (known := config_options(composed())) is not None:
            return known[1](name)
        return node

    def node_of(name: str) -> Any:
        node = option_node(name)
        for global_node in global_nodes:
            if name in global_node and node is not UNREAD:
                node = merged(node, global_node[name])
        return node

    set_globally = {key for node in global_nodes for key in node}
    return sorted({*primary, *chosen, *set_globally} - {"defaults", "hydra"}), node_of


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

    def node_of(name: str) -> Any:
        return OmegaConf.to_container(cfg[name], resolve=False) if OmegaConf.is_dict(cfg.get(name)) else cfg.get(name)

    return sorted({*cfg, *groups} - {"hydra"}), node_of

"""A ``_target_`` node of the config checked against the constructor it names: its keys against the parameters
the constructor takes, its values against their annotations (``trainer.max_epochs: int | None``,
``scheduler.milestones: Iterable[int]``), so a new class declares its settings' types once, in its signature. Each
refusal is a ``ConfigurationError`` of one line naming the key, the value and what is allowed."""

from __future__ import annotations

import collections.abc
import contextlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from labelsmooth.errors import ConfigurationError, closest, first_line


def check_target_node(name: str, node: Mapping[str, Any]) -> None:
    """Each key of a ``_target_`` node against the constructor it names: unknown keys (unless it takes
    ``**kwargs``) and values that do not fit the parameter's annotation are refused."""
    target = node.get("_target_")
    if not isinstance(target, str):
        return
    try:
        from hydra.utils import get_object

        constructor = get_object(target)
    except Exception as error:  # an import error of the target: the build reports it with its cause
        raise ConfigurationError(f"{name}._target_={target} cannot be imported ({first_line(error)})") from None
    parameters, hints = _signature(constructor)
    if parameters is None:
        return
    for key, value in node.items():
        if str(key).startswith("_"):
            continue
        if value == "???":
            raise ConfigurationError(f"{name}.{key} is missing: give it, e.g. {name}.{key}=<value>")
        if (refusal := unknown_parameter(name, target, parameters, str(key), value)) is not None:
            raise refusal
        annotation = hints.get(key, inspect.Parameter.empty)
        if annotation is not inspect.Parameter.empty and not matches(value, annotation):
            raise ConfigurationError(f"{name}.{key}={shown(value)} must be {describe_type(annotation)}")


def unknown_parameter(
    name: str, target: str, parameters: Mapping[str, inspect.Parameter], key: str, value: Any
) -> ConfigurationError | None:
    """The refusal of ``name.key=value`` when the constructor of ``target`` (its ``parameters``) takes no parameter
    ``key`` (nor ``**kwargs``), with the closest one it takes; None when it takes it."""
    if key in parameters or _takes_any_keyword(parameters):
        return None
    accepted = [k for k, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    hint = f"; did you mean {name}.{near}?" if (near := closest(key, accepted)) else ""
    return ConfigurationError(
        f"{name}.{key}={shown(value)} is not a setting: {target.rsplit('.', 1)[-1]} takes no parameter {key!r} "
        f"(it takes: {', '.join(accepted)}){hint}"
    )


def constructor_parameters(target: str) -> Mapping[str, inspect.Parameter] | None:
    """The parameters of the constructor a ``_target_`` names (None when they cannot be read)."""
    from hydra.utils import get_object

    return _signature(get_object(target))[0]


def matches(value: Any, annotation: Any) -> bool:
    """Whether a config value (None, bool, int, float, str, list, dict) fits a type annotation; True for types a
    config value cannot be checked against (classes, callables, unresolved forward references)."""
    if annotation in (Any, inspect.Parameter.empty, object) or isinstance(annotation, (str, typing.ForwardRef)):
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if annotation is type(None):
        return value is None
    if value is None:
        return False
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    sequence_types = (list, tuple, collections.abc.Sequence, collections.abc.Iterable, collections.abc.Collection)
    if origin in sequence_types or annotation in sequence_types:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            return isinstance(value, str) and (origin or annotation) is collections.abc.Iterable and not args
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args, strict=True))
        return not args or all(matches(v, args[0]) for v in value)
    if origin in (dict, collections.abc.Mapping) or annotation in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return True


def describe_type(annotation: Any) -> str:
    """A type annotation in a user's words (``int | None`` → ``an integer (or null)``)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # the choices of its Literals as one list (64 and '64' once)
        choices: dict[str, Any] = {}
        for arg in args:
            for choice in typing.get_args(arg) if typing.get_origin(arg) is typing.Literal else ():
                choices.setdefault(str(choice), choice)
        listed = [typing.Literal[tuple(choices.values())]] if choices else []
        others = [a for a in args if a is not type(None) and typing.get_origin(a) is not typing.Literal]
        kinds = [describe_type(a) for a in [*listed, *others]]
        return " or ".join(dict.fromkeys(kinds)) + (" (or null)" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if annotation in names:
        return names[annotation]
    if args and origin not in (dict, collections.abc.Mapping):
        return f"a list of {describe_type(args[0]).removeprefix('an ').removeprefix('a ')}s"
    return getattr(annotation, "__name__", str(annotation))


def _signature(constructor: Callable) -> tuple[Mapping[str, inspect.Parameter] | None, dict[str, Any]]:
    """The constructor's parameters (of ``__init__`` for a class, less ``self``) and their resolved annotations.
    A class of the project whose ``__init__`` takes ``**kwargs`` passes them to its base classes' ``__init__``, so
    it takes theirs, down to the first one without ``**kwargs`` (``DigitsDataModule`` → ``ImageDataModule``); the
    ``**kwargs`` stay when every base takes them, and for any other class (yours may send them elsewhere)."""
    try:
        parameters = dict(inspect.signature(constructor).parameters)
    except (TypeError, ValueError):
        return None, {}
    hints = _annotations(constructor.__init__ if inspect.isclass(constructor) else constructor, parameters)
    if not inspect.isclass(constructor) or not constructor.__module__.startswith("labelsmooth."):
        return parameters, hints
    for base in constructor.__mro__[1:]:
        if not _takes_any_keyword(parameters) or base is object:
            break
        if "__init__" not in vars(base):
            continue
        own = {k: p for k, p in inspect.signature(base.__init__).parameters.items() if k != "self"}
        keywords = {k: p for k, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        inherited = {k: p for k, p in own.items() if k not in keywords and p.kind is not p.VAR_POSITIONAL}
        hints = {**_annotations(base.__init__, own), **hints}
        parameters = {**keywords, **inherited}
    return parameters, hints


def _takes_any_keyword(parameters: Mapping[str, inspect.Parameter]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _annotations(function: Callable, parameters: Mapping[str, inspect.Parameter]) -> dict[str, Any]:
    """The resolved annotations of ``function``'s ``parameters``."""
    with contextlib.suppress(Exception):  # e.g. a name imported only for type checkers: then one by one, below
        return typing.get_type_hints(function)
    namespace = {**vars(collections.abc), **vars(typing), **getattr(function, "__globals__", {})}
    hints = {}
    for name, parameter in parameters.items():
        annotation = parameter.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # noqa: S307 - an annotation of installed code
            except Exception:  # a type not importable here: the constructor checks the value itself
                continue
        hints[name] = annotation
    return hints


def shown(value: Any) -> str:
    return "null" if value is None else str(value) if isinstance(value, (int, float, str)) else repr(value)

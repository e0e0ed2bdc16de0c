"""The real-valued parameters of a strategy, each declared once, next to the class, with its range.

A strategy declares each real-valued parameter as a class attribute,

    class UniformSmoothing(...):
        epsilon = RealParameter(0.0, 1.0, unsmoothed=0.0)

and that one declaration is the parameter's range for the constructor (``self.epsilon = epsilon`` is checked),
for a parameter schedule (``set_parameter`` assigns the checked value in place) and for a config validator
(``check_parameters``, without building the strategy); it also names the parameter in ``hyperparameters()``,
``numeric_parameters()`` and the ``repr``, and gives its ``unsmoothed`` value, at which the strategy is plain
cross entropy. A bound is a number, the name of a parameter declared before it (``TargetRange``'s ``low < high``)
or a function of the number of classes K (γ smoothing's ``γ > 1/K``). A parameter the constructor turns into
state (online smoothing's ``initial_epsilon``, its epoch-0 targets) is declared ``fixed``: set once, when the
strategy is built.

Every refusal is a ``ConfigurationError`` of one line naming the key, the value and the allowed range
(``smoothing.epsilon=1.5 is out of range: it must lie in [0, 1].``).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
from abc import ABC
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, overload

from labelsmooth.errors import ConfigurationError


@dataclasses.dataclass(frozen=True)
class OfClassCount:
    """A bound that is a function of the number of classes K, and how a range shows it (``1/K``)."""

    of: Callable[[int], float]
    text: str

    def __call__(self, num_classes: int) -> float:
        return self.of(num_classes)


# A bound of a range: a number, the name of a parameter declared before this one, or a function of K.
Bound = float | str | OfClassCount


def check_range(
    name: str,
    value: float,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    why: str = "",
) -> None:
    """Raise ``ConfigurationError`` (a ``ValueError``) naming the parameter, its value and the allowed range
    when ``value`` is not a number in it; ``why`` (why an excluded bound is excluded) follows where the value lies
    at or beyond an excluded bound."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigurationError(f"smoothing.{name}={value!r} must be a number in the range {low:g}..{high:g}.")
    above_low = value >= low if low_inclusive else value > low
    below_high = value <= high if high_inclusive else value < high
    if not (above_low and below_high):
        interval = f"{'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"
        beyond_excluded = (not low_inclusive and value <= low) or (not high_inclusive and value >= high)
        suffix = f" {why}" if why and beyond_excluded else ""
        raise ConfigurationError(f"smoothing.{name}={value!r} is out of range: it must lie in {interval}.{suffix}")


def real_number(name: str, value: Any) -> float:
    """``value`` when it is a real number (an int or a float as given, numpy's scalars as a float; a bool is not; NaN
    is left to the range check), else the one-line ``ConfigurationError`` naming the parameter and the value's type."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigurationError(f"smoothing.{name}={value!r} must be a number, not {type(value).__name__}.")
    return value if isinstance(value, (int, float)) else float(value)  # 1 stays 1 in the messages


def check_num_classes(num_classes: int) -> int:
    """``num_classes`` as an int, or a ``ConfigurationError`` unless it is an integer >= 2."""
    integral = isinstance(num_classes, numbers.Real) and not isinstance(num_classes, bool)
    if not integral or int(num_classes) != num_classes or int(num_classes) < 2:
        raise ConfigurationError(
            f"num_classes={num_classes!r}: label smoothing needs an integer number of classes >= 2"
        )
    return int(num_classes)


class RealParameter:
    """The declaration of a real-valued strategy parameter, and (as a class attribute) the parameter itself.

    Args:
        low: the range's lower bound (a number, the name of a parameter declared before, or a function of K).
        high: the range's upper bound, of the same kinds.
        low_inclusive: whether the lower bound belongs to the range.
        high_inclusive: whether the upper bound belongs to the range.
        why: why an excluded bound is excluded, appended to the message of a value at or beyond it;
            ``{num_classes}``, ``{low}`` and ``{high}`` are filled in.
        unsmoothed: the value at which the strategy is plain cross entropy (None: no such value).
        fixed: the value is set when the strategy is built and cannot change afterwards.

    Reading ``strategy.<name>`` gives the float value; assigning it checks the value against the range, with
    the strategy's K and its other parameters' current values, and stores ``float(value)``.
    """

    def __init__(
        self,
        low: Bound,
        high: Bound,
        *,
        low_inclusive: bool = True,
        high_inclusive: bool = True,
        why: str = "",
        unsmoothed: float | None = None,
        fixed: bool = False,
    ) -> None:
        self.low, self.high = low, high
        self.low_inclusive, self.high_inclusive = low_inclusive, high_inclusive
        self.why = why
        self.unsmoothed = None if unsmoothed is None else float(unsmoothed)
        self.fixed = fixed
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> RealParameter: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> float: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> RealParameter | float:
        if instance is None:
            return self
        try:
            return instance.__dict__[self.name]
        except KeyError:
            raise AttributeError(f"{type(instance).__name__}.{self.name} is not set") from None

    def __set__(self, instance: SchedulableParameters, value: float) -> None:
        instance.__dict__[self.name] = self.checked(instance, value)

    def checked(self, instance: SchedulableParameters, value: float) -> float:
        """``float(value)`` if ``instance.<name> = value`` is allowed, else the ``ConfigurationError``. Allowed: not
        a ``fixed`` parameter that is already set, and every parameter in its range with this value and the
        others' current values (a bound may be this parameter: ``TargetRange``'s ``high`` after a new ``low``)."""
        if self.fixed and self.name in instance.__dict__:
            raise ConfigurationError(
                f"{type(instance).__name__}.{self.name} sets up the strategy's state when it is built; it cannot be "
                "changed during training."
            )
        current = {name: instance.__dict__[name] for name in instance.real_parameters if name in instance.__dict__}
        return type(instance).checked_values(instance.num_classes, {**current, self.name: value})[self.name]

    def bound(self, bound: Bound, num_classes: int | None, values: Mapping[str, float]) -> float | None:
        """The value of ``bound`` (None where it needs K and K is unknown, or a parameter not given)."""
        if isinstance(bound, str):
            return values.get(bound)
        if isinstance(bound, OfClassCount):
            return None if num_classes is None else bound(num_classes)
        return bound

    def check(self, value: Any, num_classes: int | None, values: Mapping[str, float]) -> None:
        """Raise the one-line ``ConfigurationError`` when ``value`` is out of range (given K and the values of the
        parameters declared before); where one bound cannot be resolved (K unknown), the other one."""
        low, high = self.bound(self.low, num_classes, values), self.bound(self.high, num_classes, values)
        if low is None or high is None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ConfigurationError(f"smoothing.{self.name}={value!r} must be a number.")
            below = low is not None and (value < low if self.low_inclusive else value <= low)
            if below or (high is not None and (value > high if self.high_inclusive else value >= high)):
                raise ConfigurationError(
                    f"smoothing.{self.name}={value!r} is out of range: it must lie in {self.describe()}."
                )
            return
        why = self.why.format(num_classes=num_classes, low=low, high=high)
        check_range(
            self.name,
            value,
            low,
            high,
            low_inclusive=self.low_inclusive,
            high_inclusive=self.high_inclusive,
            why=why,
        )

    def describe(self) -> str:
        """The range as text, e.g. ``[0, 1]``, ``(1/K, 1]`` or ``(low, 1]``."""

        def text(bound: Bound) -> str:
            if isinstance(bound, str):
                return bound
            if isinstance(bound, OfClassCount):
                return bound.text
            return f"{bound:g}"

        left, right = "[" if self.low_inclusive else "(", "]" if self.high_inclusive else ")"
        return f"{left}{text(self.low)}, {text(self.high)}{right}"

    def __repr__(self) -> str:
        extras = "" if self.unsmoothed is None else f", unsmoothed={self.unsmoothed:g}"
        return f"RealParameter({self.name} in {self.describe()}{extras}{', fixed' if self.fixed else ''})"


class SchedulableParameters(ABC):
    """Has schedulable parameters: real-valued parameters declared once (``RealParameter`` class attributes),
    checked against their ranges when set, and changed in place by ``set_parameter``.

    ``real_parameters`` (the declarations, the class's own first, then its bases') and ``unsmoothed`` (each
    declared unsmoothed value: ``{"epsilon": 0.0}`` for uniform smoothing, ``{"gamma": 1.0}`` for γ) are derived
    from the declarations when the class is defined. Training records ``unsmoothed`` in ``metrics.json``
    (``unsmoothed.smoothing.<name>``), the report takes its baseline from there and a parameter schedule switches
    to it. ``options`` names the other configured parameters (a convention, a seed), which
    ``hyperparameters()`` lists after the real ones.
    """

    num_classes: int
    real_parameters: ClassVar[Mapping[str, RealParameter]] = {}
    unsmoothed: ClassVar[Mapping[str, float]] = {}
    options: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared: dict[str, RealParameter] = {}
        seen: set[str] = set()
        for klass in cls.__mro__:
            for name, value in vars(klass).items():
                if name in seen:
                    continue
                seen.add(name)
                if isinstance(value, RealParameter):
                    declared[name] = value
        for index, (name, declaration) in enumerate(declared.items()):
            before = list(declared)[:index]
            for bound in (declaration.low, declaration.high):
                if isinstance(bound, str) and bound not in before:
                    raise TypeError(f"{cls.__name__}.{name}: its bound {bound!r} is not a parameter declared before it")
        cls.real_parameters = declared
        cls.unsmoothed = {name: d.unsmoothed for name, d in declared.items() if d.unsmoothed is not None}

    @classmethod
    def checked_values(cls, num_classes: int | None, values: Mapping[str, Any]) -> dict[str, float]:
        """``values`` of declared parameters as floats, each checked against its range in declaration order
        (given K, and the values before it); a range that needs K is skipped when ``num_classes`` is None."""
        checked: dict[str, float] = {}
        for name, declaration in cls.real_parameters.items():
            if name in values:
                value = real_number(name, values[name])
                declaration.check(value, num_classes, checked)
                checked[name] = float(value)
        return checked

    @classmethod
    def check_parameters(cls, num_classes: int | None = None, **params: Any) -> dict[str, float]:
        """Check configured parameter values without building the strategy; the checked real-valued ones as
        floats, or the ``ConfigurationError`` the constructor would raise for them.

        Each given real-valued parameter is checked against its declared range, with the constructor's defaults
        for the parameters not given (``TargetRange``'s ``high`` needs ``low``). A range that depends on the
        number of classes (γ smoothing's ``γ > 1/K``) is checked only when ``num_classes`` is given. A name the
        constructor does not take is refused; the parameters that are not real-valued (a convention, a seed, a
        prior vector) are the constructor's to check.
        """
        signature = inspect.signature(cls.__init__)
        accepted = [name for name in signature.parameters if name not in ("self", "num_classes")]
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ConfigurationError(
                f"smoothing.{unknown[0]}: {cls.__name__} has no such parameter (it takes: {', '.join(accepted)})."
            )
        defaults = {
            name: parameter.default
            for name, parameter in signature.parameters.items()
            if name in cls.real_parameters and parameter.default is not inspect.Parameter.empty
        }
        if num_classes is not None:
            num_classes = check_num_classes(num_classes)
        checked = cls.checked_values(num_classes, {**defaults, **params})
        return {name: value for name, value in checked.items() if name in params}

    @classmethod
    def unsmoothed_value(cls, parameter: str) -> float:
        """The value of ``parameter`` at which the strategy does not smooth (``unsmoothed``), or a ``ValueError``."""
        if parameter not in cls.unsmoothed:
            declared = ", ".join(sorted(cls.unsmoothed)) or "none"
            raise ConfigurationError(
                f"{cls.__name__} declares no unsmoothed value for {parameter!r} (it declares: {declared})"
            )
        return float(cls.unsmoothed[parameter])

    def numeric_parameters(self) -> dict[str, float]:
        """The declared real-valued parameters and their current values (a schedule can change those not
        ``fixed``)."""
        return {name: getattr(self, name) for name in self.real_parameters}

    def hyperparameters(self) -> dict[str, Any]:
        """The strategy's own parameters: the real-valued ones, then the ``options`` (its ``repr``;
        ``metrics.json`` records the configured ones)."""
        return {**self.numeric_parameters(), **{name: getattr(self, name) for name in self.options}}

    def declaration(self, name: str) -> RealParameter:
        """The declaration of the real-valued parameter ``name``, or a ``ConfigurationError`` naming those there are."""
        if name not in self.real_parameters:
            raise ConfigurationError(
                f"{type(self).__name__} has no real-valued parameter {name!r} to set (it has: "
                f"{', '.join(self.real_parameters) or 'none'})"
            )
        return self.real_parameters[name]

    def check_parameter(self, name: str, value: float) -> float:
        """The value ``set_parameter(name, value)`` would assign, or the ``ConfigurationError`` it would raise."""
        return self.declaration(name).checked(self, value)

    def restore_parameters(self, values: Mapping[str, float]) -> None:
        """Set the declared parameters among ``values`` that are not ``fixed`` (the values a checkpoint trained
        with: a schedule's latest); other names (another strategy's) are left alone."""
        for name, value in values.items():
            declaration = self.real_parameters.get(name)
            if declaration is not None and not declaration.fixed and getattr(self, name) != value:
                self.set_parameter(name, value)

    def set_parameter(self, name: str, value: float) -> None:
        """Use ``name=value`` from the next call on (a parameter schedule's value for an epoch), in place: checked
        against the declared range (``ConfigurationError`` naming the parameter and its range) and assigned."""
        self.declaration(name)
        setattr(self, name, value)

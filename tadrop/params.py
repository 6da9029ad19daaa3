"""Hyper-parameters of merge methods and sparsifiers: one spec per class, in one place.

A class's parameters are its constructor's keyword arguments (names, defaults and annotated
types, read once here) plus the single-parameter ranges it declares in ``param_ranges``. The
config checks (``tadrop merge --dry-run``), the registry and each class's ``validate`` all use
``param_specs``, so a new class gets the same checks without a line of its own: every float is
finite, every number in its declared range, every per-task weight a finite number. Rules that
tie two parameters together (TADrop's a < b) stay in the class's ``validate``.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any


class ParameterError(ValueError):
    """A hyper-parameter is out of range; ``key`` names it (the config reports it there)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Range:
    """An interval of allowed numbers; ``None`` ends are unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return low_ok and high_ok

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high}"
        return f"{'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


FRACTION = Range(0, 1, low_open=True)  # (0, 1]: a density, a kept fraction
PROBABILITY = Range(0, 1, high_open=True)  # [0, 1): a drop probability
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)

_KINDS = {bool: "bool", int: "int", float: "float", str: "str"}
_EXPECTED = {
    "bool": "true or false",
    "int": "a whole number",
    "float": "a number",
    "str": "a string",
    "weights": "a mapping task -> number",
}


@dataclass(frozen=True)
class ParamSpec:
    """One constructor parameter: its default, kind (from the annotation) and range."""

    name: str
    default: Any
    kind: str | None  # bool, int, float, str, weights (task -> number); None: not checked
    range: Range | None = None

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (the key is named by the caller), or None."""
        if value is None and self.default is None:
            return None
        if self.kind is None:
            return None
        if self.kind == "weights":
            return self._weights_problem(value)
        if not _is_kind(value, self.kind):
            return f"expected {_EXPECTED[self.kind]} (default {self.default!r}), got {value!r}"
        if self.kind in ("int", "float"):
            return self._number_problem(value)
        return None

    def _number_problem(self, value: float) -> str | None:
        if not math.isfinite(value):
            where = f" in {self.range}" if self.range else ""
            return f"must be a finite number{where} (default {self.default!r}), got {value!r}"
        if self.range is not None and value not in self.range:
            return (
                f"{self.name}={value!r} is outside {self.range}; choose a value in that range "
                f"(default {self.default!r})"
            )
        return None

    def _weights_problem(self, value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return (
                f"expected {_EXPECTED['weights']} (e.g. {{task1: 1.0, task2: 0.5}}), got "
                f"{value!r}; tasks left out weigh 1"
            )
        for task, weight in value.items():
            if not _is_kind(weight, "float") or not math.isfinite(weight):
                return f"the weight of task {task!r} must be a finite number, got {weight!r}"
        return None


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {"bool": bool, "str": str}[kind])


def _kind_of(annotation: Any, default: Any) -> str | None:
    """bool/int/float/str from the annotation (``X | None`` counts as X), else the default's."""
    candidates = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    for candidate in candidates:
        if typing.get_origin(candidate) in (dict, Mapping) or candidate in (dict, Mapping):
            return "weights"
        if candidate in _KINDS:
            return _KINDS[candidate]
    return _KINDS.get(type(default))


@cache
def param_specs(cls: type) -> dict[str, ParamSpec]:
    """The parameters a config or UI may set on ``cls``, in constructor order.

    A class without its own ``__init__`` (WeightAveraging) takes none; ``*args``/``**kwargs``
    are not parameters.
    """
    if cls.__init__ is object.__init__:
        return {}
    signature = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except NameError:  # an annotation imported only for type checkers: kinds from defaults
        hints = {}
    ranges: dict[str, Range] = getattr(cls, "param_ranges", {})
    specs = {}
    for name, parameter in signature.parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = None if parameter.default is parameter.empty else parameter.default
        kind = _kind_of(hints.get(name), default)
        specs[name] = ParamSpec(name, default, kind, ranges.get(name))
    return specs


def parameters_of(cls: type) -> dict[str, Any]:
    """Constructor parameters and their defaults (what a UI or config may set)."""
    return {name: spec.default for name, spec in param_specs(cls).items()}


def get_params(instance: object) -> dict[str, Any]:
    """The instance's parameters (scikit-learn's ``get_params``): they rebuild it."""
    return {name: getattr(instance, name) for name in param_specs(type(instance))}


def check_params(instance: object) -> None:
    """ParameterError naming the first parameter of ``instance`` that its spec refuses."""
    for name, spec in param_specs(type(instance)).items():
        value = getattr(instance, name, spec.default)
        problem = spec.problem(value)
        if problem is not None:
            raise ParameterError(name, f"{type(instance).__name__} {name}: {problem}.")


def validate_params(instance: Any) -> None:
    """Every check of a method or sparsifier: each parameter against its spec, then the
    class's own ``validate`` (rules that tie parameters together)."""
    check_params(instance)
    instance.validate()


def describe(instance: object | None) -> str:
    """``Name(key=value, ...)`` for messages that name the parameters used."""
    if instance is None:
        return "none"
    params = ", ".join(f"{key}={value!r}" for key, value in get_params(instance).items())
    return f"{type(instance).__name__}({params})"

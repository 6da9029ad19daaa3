"""Names -> classes for merge methods and sparsifiers; variants are presets (data), not subclasses.

``build_merge(method, sparsifier, method_params, sparsifier_params)`` is what the config, the
CLI and the dashboard call. Presets: ``dare_ties`` = TIES with a DARE trim, ``dare_linear`` =
Task Arithmetic over DARE-sparsified task vectors, ``della`` = TIES-style merge over DELLA.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from tadrop.merge import EMR, TIES, MergeMethod, TaskArithmetic, WeightAveraging
from tadrop.sparsify import DARE, DELLA, Breadcrumbs, Magnitude, Sparsifier, TADrop

METHODS: dict[str, type[MergeMethod]] = {
    "averaging": WeightAveraging,
    "task_arithmetic": TaskArithmetic,
    "ties": TIES,
    "emr": EMR,
}

SPARSIFIERS: dict[str, type[Sparsifier]] = {
    "tadrop": TADrop,
    "magnitude": Magnitude,
    "dare": DARE,
    "della": DELLA,
    "breadcrumbs": Breadcrumbs,
}


@dataclass(frozen=True)
class Preset:
    method: str
    sparsifier: str


PRESETS: dict[str, Preset] = {
    "dare_ties": Preset("ties", "dare"),
    "dare_linear": Preset("task_arithmetic", "dare"),
    "della": Preset("ties", "della"),
}


def _lookup(kind: str, name: str, table: dict[str, Any]) -> Any:
    try:
        return table[name]
    except KeyError:
        raise ValueError(
            f"Unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(table))}."
        ) from None


def parameters_of(cls: type) -> dict[str, Any]:
    """Constructor parameters and their defaults (what a UI or config may set)."""
    if cls.__init__ is object.__init__:
        return {}
    signature = inspect.signature(cls.__init__)
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return {
        name: (None if parameter.default is inspect.Parameter.empty else parameter.default)
        for name, parameter in signature.parameters.items()
        if name != "self" and parameter.kind not in variadic
    }


def _construct(kind: str, cls: type, params: dict[str, Any]) -> Any:
    allowed = parameters_of(cls)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"{kind} {cls.__name__} has no parameter(s) {unknown}; allowed: {sorted(allowed)}."
        )
    instance = cls(**params)
    instance.validate()
    return instance


def build_sparsifier(name: str | None, params: dict[str, Any] | None = None) -> Sparsifier | None:
    if name in (None, "", "none"):
        return None
    return _construct("sparsifier", _lookup("sparsifier", name, SPARSIFIERS), dict(params or {}))


def build_merge(
    method: str,
    sparsifier: str | None = None,
    method_params: dict[str, Any] | None = None,
    sparsifier_params: dict[str, Any] | None = None,
) -> tuple[MergeMethod, Sparsifier | None]:
    """A validated (method, sparsifier) pair from names and parameter dicts."""
    if method in PRESETS:
        preset = PRESETS[method]
        method, sparsifier = (
            preset.method,
            sparsifier if sparsifier not in (None, "", "none") else preset.sparsifier,
        )
    method_cls = _lookup("merge method", method, METHODS)
    return _construct("merge method", method_cls, dict(method_params or {})), build_sparsifier(
        sparsifier, sparsifier_params
    )


def method_names() -> list[str]:
    return [*METHODS, *PRESETS]


def sparsifier_names() -> list[str]:
    return ["none", *SPARSIFIERS]

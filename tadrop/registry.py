"""Names -> classes for merge methods and sparsifiers; variants are presets (data), not subclasses.

``build_merge(method, sparsifier, method_params, sparsifier_params)`` is what the config, the
CLI and the dashboard call. Presets: ``dare_ties`` = TIES with a DARE trim, ``dare_linear`` =
Task Arithmetic over DARE-sparsified task vectors, ``della`` = TIES-style merge over DELLA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tadrop.merge import EMR, TIES, MergeMethod, TaskArithmetic, WeightAveraging
from tadrop.params import param_specs, parameters_of, validate_params
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
NO_SPARSIFIER = (None, "", "none")  # how a config, the CLI and the dashboard say "none"


def resolve_preset(method: str, sparsifier: str | None = None) -> tuple[str, str | None]:
    """(method, sparsifier or None) after a preset is applied: a preset names both, and a
    sparsifier chosen explicitly replaces the preset's."""
    chosen = None if sparsifier in NO_SPARSIFIER else sparsifier
    preset = PRESETS.get(method)
    if preset is None:
        return method, chosen
    return preset.method, chosen or preset.sparsifier


def _lookup(kind: str, name: str, table: dict[str, Any]) -> Any:
    try:
        return table[name]
    except KeyError:
        raise ValueError(
            f"Unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(table))}."
        ) from None


def construct(kind: str, cls: type, params: dict[str, Any]) -> Any:
    """``cls(**params)``, validated; ValueError (ParameterError naming the key) when not."""
    allowed = parameters_of(cls)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"{kind} {cls.__name__} has no parameter(s) {unknown}; allowed: {sorted(allowed)}."
        )
    instance = cls(**params)
    validate_params(instance)
    return instance


def build_sparsifier(name: str | None, params: dict[str, Any] | None = None) -> Sparsifier | None:
    if name in NO_SPARSIFIER:
        return None
    return construct("sparsifier", _lookup("sparsifier", name, SPARSIFIERS), dict(params or {}))


def build_merge(
    method: str,
    sparsifier: str | None = None,
    method_params: dict[str, Any] | None = None,
    sparsifier_params: dict[str, Any] | None = None,
) -> tuple[MergeMethod, Sparsifier | None]:
    """A validated (method, sparsifier) pair from names and parameter dicts."""
    method, sparsifier = resolve_preset(method, sparsifier)
    method_cls = _lookup("merge method", method, METHODS)
    return construct("merge method", method_cls, dict(method_params or {})), build_sparsifier(
        sparsifier, sparsifier_params
    )


def method_names() -> list[str]:
    return [*METHODS, *PRESETS]


def sparsifier_names() -> list[str]:
    return ["none", *SPARSIFIERS]


__all__ = [
    "METHODS",
    "NO_SPARSIFIER",
    "PRESETS",
    "SPARSIFIERS",
    "Preset",
    "build_merge",
    "build_sparsifier",
    "construct",
    "method_names",
    "param_specs",
    "parameters_of",
    "resolve_preset",
    "sparsifier_names",
]

"""Checks of a run config that need the registry: method and sparsifier names, their
parameters (names, types, ranges) and the sweep grid. Each problem is (location, message)."""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any

from tadrop.config.yaml_source import Location

if TYPE_CHECKING:
    from tadrop.config.schema import RunConfig

Problem = tuple[Location, str]
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _type_problem(value: Any, default: Any) -> str | None:
    """A message when ``value`` is not of the kind the parameter's default is."""
    if default is None:
        return None
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(default, float):
        ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    else:
        return None
    return None if ok else f"expected {kind} (default {default!r}), got {value!r}"


def allowed_parameters(cls: type) -> dict[str, Any]:
    """``registry.parameters_of`` without ``*args``/``**kwargs`` (a class without its own
    ``__init__``, such as WeightAveraging, inherits object's and takes no parameter)."""
    from tadrop.registry import parameters_of

    signature = inspect.signature(cls.__init__)
    variadic = {
        name
        for name, p in signature.parameters.items()
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    return {name: default for name, default in parameters_of(cls).items() if name not in variadic}


def _param_problems(
    section: str, kind: str, name: str, cls: type, params: dict[str, Any]
) -> list[Problem]:
    allowed = allowed_parameters(cls)
    problems: list[Problem] = []
    for key, value in params.items():
        if key not in allowed:
            listing = ", ".join(f"{k} (default {v!r})" for k, v in allowed.items()) or "none"
            problems.append(
                ((section, key), f"{kind} {name!r} has no parameter {key!r}; allowed: {listing}")
            )
            continue
        message = _type_problem(value, allowed[key])
        if message:
            problems.append(((section, key), message))
    return problems


def _range_problem(config: RunConfig, section_params: dict[str, dict[str, Any]]) -> Problem | None:
    """Build the pair; a ValueError from a class's ``validate`` is placed at the key it names."""
    try:
        config.build(section_params["method_params"], section_params["sparsifier_params"])
    except ValueError as error:
        message = str(error).rstrip(".")
        for section, params in section_params.items():
            for key in params:
                if re.search(rf"\b{re.escape(key)}\s*=", message) or message.startswith(f"{key} "):
                    return (section, key), message
        return ("method",), message
    return None


def _names_problems(config: RunConfig) -> list[Problem]:
    from tadrop import registry

    problems: list[Problem] = []
    if config.method not in registry.method_names():
        problems.append(
            (
                ("method",),
                f"unknown merge method {config.method!r}; allowed: {', '.join(registry.method_names())}",
            )
        )
    if config.sparsifier is not None and config.sparsifier not in registry.sparsifier_names():
        problems.append(
            (
                ("sparsifier",),
                f"unknown sparsifier {config.sparsifier!r}; allowed: {', '.join(registry.sparsifier_names())}",
            )
        )
    return problems


def _source_problems(config: RunConfig) -> list[Problem]:
    if config.demo is not None and (config.base is not None or config.models is not None):
        return [
            (
                ("demo",),
                "give either demo (the demo zoo) or base + models (your own checkpoints), not both",
            )
        ]
    if config.demo is None:
        if config.base is None:
            return [
                (
                    ("base",),
                    "is required (the pre-trained checkpoint), or give a demo: {zoo: text, size: quick} block",
                )
            ]
        if not config.models:
            return [
                (
                    ("models",),
                    "is required: a mapping task -> fine-tuned checkpoint (or a list of paths)",
                )
            ]
    return []


def _sweep_problems(config: RunConfig) -> list[Problem]:
    if config.sweep is None:
        return []
    problems: list[Problem] = []
    for section in ("method_params", "sparsifier_params"):
        for key, values in getattr(config.sweep, section).items():
            if not values:
                problems.append((("sweep", section, key), "needs at least one value"))
    return problems


def semantic_problems(config: RunConfig) -> list[Problem]:
    """Every problem pydantic cannot see; an empty list when the config is usable."""
    from tadrop import registry

    problems = _source_problems(config) + _names_problems(config) + _sweep_problems(config)
    if not _DEVICE.match(config.device):
        problems.append(
            (
                ("device",),
                f"unknown device {config.device!r}; allowed: auto, cpu, cuda, cuda:N, mps",
            )
        )
    if problems:
        return problems
    method, sparsifier = config.merge_spec()
    method_cls = registry.METHODS[method]
    if config.sparsifier_params and sparsifier is None:
        return [
            (
                ("sparsifier_params",),
                f"given but no sparsifier is chosen; set sparsifier: to one of {', '.join(registry.SPARSIFIERS)}",
            )
        ]
    sections = [("method_params", "merge method", method, method_cls)]
    if sparsifier is not None:
        sections.append(
            ("sparsifier_params", "sparsifier", sparsifier, registry.SPARSIFIERS[sparsifier])
        )
    for section, kind, name, cls in sections:
        problems += _param_problems(section, kind, name, cls, getattr(config, section))
        for key, values in getattr(config.sweep, section).items() if config.sweep else []:
            for index, value in enumerate(values):
                found = _param_problems(section, kind, name, cls, {key: value})
                problems += [(("sweep", section, key, index), message) for _, message in found]
        if (
            sparsifier is None
            and section == "method_params"
            and config.sweep
            and config.sweep.sparsifier_params
        ):
            problems.append(
                (
                    ("sweep", "sparsifier_params"),
                    "sweeps sparsifier parameters but no sparsifier is chosen",
                )
            )
    if problems:
        return problems
    for label, method_params, sparsifier_params in config.grid():
        problem = _range_problem(
            config, {"method_params": method_params, "sparsifier_params": sparsifier_params}
        )
        if problem is not None:
            location, message = problem
            if label and config.sweep is not None and location[0] != "method":
                location = ("sweep", *location)
            return [(location, message + (f" (sweep point {label})" if label else ""))]
    return []

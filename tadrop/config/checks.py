"""Checks of a run config that need the registry: method and sparsifier names, their
parameters (names, types, ranges) and the sweep grid. Each problem is (location, message)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tadrop.config.yaml_source import Location

if TYPE_CHECKING:
    from tadrop.config.schema import RunConfig

Problem = tuple[Location, str]
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _param_problems(
    section: str, kind: str, name: str, cls: type, params: dict[str, Any]
) -> list[Problem]:
    """Unknown keys, and each value against its spec (type, finite, range: tadrop.params)."""
    from tadrop.params import param_specs

    specs = param_specs(cls)
    problems: list[Problem] = []
    for key, value in params.items():
        if key not in specs:
            listing = ", ".join(f"{k} (default {v.default!r})" for k, v in specs.items()) or "none"
            problems.append(
                ((section, key), f"{kind} {name!r} has no parameter {key!r}; allowed: {listing}")
            )
            continue
        message = specs[key].problem(value)
        if message:
            problems.append(((section, key), message))
    return problems


def _blame(kind: str, cls: type, params: dict[str, Any]) -> str | None:
    """The given key whose removal (back to its default) makes the parameters valid: where a
    rule that ties two parameters together (a < b) is reported."""
    from tadrop.registry import construct

    for key in params:
        try:
            construct(kind, cls, {k: v for k, v in params.items() if k != key})
        except ValueError:
            continue
        return key
    return None


def _range_problem(config: RunConfig, point: dict[str, dict[str, Any]]) -> Problem | None:
    """Build each class of one sweep point; its error is placed at the key it names."""
    from tadrop import registry
    from tadrop.params import ParameterError

    method, sparsifier = config.merge_spec()
    sections = [("method_params", "merge method", registry.METHODS[method])]
    if sparsifier is not None:
        sections.append(("sparsifier_params", "sparsifier", registry.SPARSIFIERS[sparsifier]))
    for section, kind, cls in sections:
        params = point[section]
        try:
            registry.construct(kind, cls, params)
        except ValueError as error:
            named = error.key if isinstance(error, ParameterError) else None
            key = named if named in params else _blame(kind, cls, params)
            location = (section, key) if key is not None else (section,)
            return location, str(error).rstrip(".")
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
    if config.sweep.max_points is not None and config.sweep.max_points < 1:
        problems.append((("sweep", "max_points"), "must be a positive whole number"))
    elif config.sweep.size > config.sweep.limit:
        problems.append(
            (
                ("sweep",),
                f"has {config.sweep.size:,} points (the product of the value counts), more than "
                f"the limit of {config.sweep.limit:,}; sweep fewer values, or raise the limit "
                "deliberately with max_points: N in the sweep section",
            )
        )
    return problems


def _task_names(config: RunConfig) -> tuple[list[str], list[Problem]]:
    """The run's task names (the models' keys, or the demo zoo's tasks) and their problems:
    a name is one safe path component (EMR's task-model folder), a demo task is in the zoo."""
    from tadrop.task_vectors import task_name_problem

    if config.models:
        problems = [(("models", task), task_name_problem(task)) for task in config.models]
        return list(config.models), [(where, text) for where, text in problems if text]
    if config.demo is None:
        return [], []
    from tadrop.zoo.recipes import recipe_for

    zoo_tasks = list(recipe_for(config.demo.zoo, config.demo.size).tasks)
    unknown = [
        (
            ("demo", "tasks", index),
            f"unknown task {task!r}; the {config.demo.zoo} zoo has {zoo_tasks}",
        )
        for index, task in enumerate(config.demo.tasks or [])
        if task not in zoo_tasks
    ]
    return list(config.demo.tasks or zoo_tasks), unknown


def _task_problems(config: RunConfig) -> list[Problem]:
    """Task names are safe and known; per-task weights name only the run's tasks."""
    from tadrop import registry
    from tadrop.params import param_specs

    known, problems = _task_names(config)
    if not known or problems:
        return problems
    for key, spec in param_specs(registry.METHODS[config.merge_spec()[0]]).items():
        weights = config.method_params.get(key)
        if spec.kind == "weights" and isinstance(weights, dict):
            unknown = sorted(set(weights) - set(known))
            if unknown:
                problems.append(
                    (
                        ("method_params", key),
                        f"names unknown task(s) {unknown}; the tasks are {known}",
                    )
                )
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
    problems = _task_problems(config)
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
    return problems or _grid_problems(config)


def _grid_problems(config: RunConfig) -> list[Problem]:
    """Build the classes of each grid point (rules that tie parameters together); the first
    problem, at the sweep key when a swept value causes it."""
    for label, method_params, sparsifier_params in config.grid():
        problem = _range_problem(
            config, {"method_params": method_params, "sparsifier_params": sparsifier_params}
        )
        if problem is not None:
            location, message = problem
            if (
                label
                and config.sweep is not None
                and location[1:]
                and location[1] in getattr(config.sweep, location[0])
            ):
                location = ("sweep", *location)
            return [(location, message + (f" (sweep point {label})" if label else ""))]
    return []

"""Loading a run config: YAML -> structure and types (pydantic, ``schema``) -> the merge
parameters against the registry (``checks``); every problem in one ``ConfigError`` with
``file:line``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tadrop.config.checks import semantic_problems
from tadrop.config.schema import RunConfig
from tadrop.config.yaml_source import ConfigError, KeyLines, Location, format_location, read_yaml

MAX_PROBLEMS_SHOWN = 20  # a message lists at most this many problems, then counts the rest


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a run config; ConfigError (file:line, key, allowed values) if invalid."""
    path = Path(path).expanduser().absolute()
    data, lines = read_yaml(path)
    return validate_config(data, folder=path.parent, source=path, lines=lines)


def validate_config(
    data: dict[str, Any], *, folder: Path, source: Path | None = None, lines: KeyLines | None = None
) -> RunConfig:
    """Validate already parsed config data (paths relative to ``folder``)."""
    lines = lines or KeyLines(None)
    where = str(source) if source else "config"
    context = {"folder": folder, "template": data.get("template") is True}
    try:
        config = RunConfig.model_validate(data, context=context)
    except ValidationError as error:
        problems = [(tuple(item["loc"]), _pydantic_message(item)) for item in error.errors()]
        raise ConfigError(_format_problems(where, problems, lines)) from None
    config.source = source
    problems = semantic_problems(config)
    if problems:
        raise ConfigError(_format_problems(where, problems, lines))
    return config


def _section_fields(location: Location) -> list[str]:
    """The keys allowed in the section at ``location`` (for unknown-key messages)."""
    model: type[BaseModel] = RunConfig
    for part in location:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        candidates = getattr(annotation, "__args__", (annotation,))
        submodels = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not submodels:
            return []
        model = submodels[0]
    return [name for name in model.model_fields if name != "source"]


def _pydantic_message(item: dict[str, Any]) -> str:
    location = tuple(item["loc"])
    if item["type"] == "extra_forbidden":
        allowed = _section_fields(location[:-1])
        return f"unknown key {location[-1]!r}; allowed keys here: {', '.join(allowed)}"
    if item["type"] == "missing":
        return "is required but missing"
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "literal_error":
        message = f"{message}; got {item.get('input')!r}"
    return message


def _format_problems(where: str, problems: list[tuple[Location, str]], lines: KeyLines) -> str:
    formatted = []
    for location, message in _dedupe(problems):
        line = lines.line_of(location)
        prefix = f"{where}:{line}" if line is not None else where
        formatted.append(f"{prefix}: {format_location(location)}: {message}.")
    if len(formatted) == 1:
        return formatted[0]
    shown = formatted[:MAX_PROBLEMS_SHOWN]
    if len(formatted) > len(shown):
        shown.append(f"... and {len(formatted) - len(shown)} more")
    return f"{where}: {len(formatted)} problems:\n  " + "\n  ".join(shown)


def _dedupe(problems: list[tuple[Location, str]]) -> list[tuple[Location, str]]:
    seen: dict[Location, str] = {}
    for location, message in problems:
        seen.setdefault(location, message)
    return list(seen.items())

"""YAML reading for run configs: the data, plus the line of every key for error messages.

PyYAML's ``safe_load`` forgets where a value came from; ``compose`` keeps node marks. Both are
run on the same text: the data is validated, and an error's location (a tuple of keys and list
indices, as pydantic reports it) is turned back into a line number with ``KeyLines``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A run config is not valid; the message names the file, the line and the fix."""


Location = tuple[str | int, ...]


class KeyLines:
    """1-based line of each key path in a YAML document (the line of the key itself)."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[Location, int] = {}
        self.duplicates: list[tuple[Location, int]] = []
        if root is not None:
            self.lines[()] = root.start_mark.line + 1
            self._walk(root, ())

    def _walk(self, node: yaml.Node, location: Location) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = (*location, key)
                if key in seen:
                    self.duplicates.append((child, key_node.start_mark.line + 1))
                seen.add(key)
                self.lines[child] = key_node.start_mark.line + 1
                self._walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*location, index)
                self.lines[child] = item.start_mark.line + 1
                self._walk(item, child)

    def line_of(self, location: Sequence[str | int]) -> int | None:
        """The line of the deepest key of ``location`` that the file has (None if none)."""
        location = tuple(location)
        while location:
            if location in self.lines:
                return self.lines[location]
            location = location[:-1]
        return self.lines.get(())


def read_yaml(path: Path) -> tuple[dict[str, Any], KeyLines]:
    """The top-level mapping of a YAML file and its key lines; ConfigError if unreadable."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file.")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: not valid YAML ({problem}).") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; see docs/cli.md for the config keys.")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys (key: value), not a {type(data).__name__}."
        )
    lines = KeyLines(root)
    if lines.duplicates:
        location, line = lines.duplicates[0]
        raise ConfigError(
            f"{path}:{line}: key {format_location(location)} is given twice; keep one."
        )
    return data, lines


def format_location(location: Sequence[str | int]) -> str:
    """('output', 'path') -> 'output.path'; list indices as [i]."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"

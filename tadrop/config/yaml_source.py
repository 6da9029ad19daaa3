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


MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: a run config is a page of text
MAX_ALIASES = 100  # *references to &anchors
MAX_DEPTH = 64  # nested mappings/lists (PyYAML's composer recurses per level)
MAX_NODES = 10_000  # values after every alias is expanded (an alias bomb expands to billions)


def read_yaml(path: Path) -> tuple[dict[str, Any], KeyLines]:
    """The top-level mapping of a YAML file and its key lines; ConfigError if unreadable."""
    text = _read_text(path)
    try:
        _check_bounds(text, path)
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


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, at most MAX_CONFIG_BYTES; ConfigError naming the file if not."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file.")
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror or error}).") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_CONFIG_BYTES:,} bytes; a run config is a short YAML file "
            "(is this the right file?)."
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {error.start}); save the config as UTF-8."
        ) from None


def _check_bounds(text: str, path: Path) -> None:
    """Refuse alias bombs, recursive aliases and deep nesting from the event stream, before
    anything is built: each anchor's expanded size is counted, never expanded."""
    sizes: dict[str, int] = {}  # anchor -> values it expands to
    stack: list[list[Any]] = [[None, 0]]  # [anchor, values so far] per open collection
    aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise ConfigError(f"{path}:{line}: more than {MAX_ALIASES} aliases (*name).")
            if event.anchor in (anchor for anchor, _ in stack):
                raise ConfigError(
                    f"{path}:{line}: alias *{event.anchor} refers to a value that contains it "
                    "(a recursive alias); write the value out."
                )
            stack[-1][1] += sizes.get(event.anchor, 1)
        elif isinstance(event, yaml.ScalarEvent):
            stack[-1][1] += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            stack.append([event.anchor, 1])
            if len(stack) - 1 > MAX_DEPTH:
                raise ConfigError(f"{path}:{line}: nested deeper than {MAX_DEPTH} levels.")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, size = stack.pop()
            if anchor is not None:
                sizes[anchor] = size
            stack[-1][1] += size
        if stack[0][1] + sum(size for _, size in stack[1:]) > MAX_NODES:
            raise ConfigError(
                f"{path}:{line}: expands to more than {MAX_NODES:,} values (aliases of aliases?); "
                "a run config needs far fewer."
            )


def format_location(location: Sequence[str | int]) -> str:
    """('output', 'path') -> 'output.path'; list indices as [i]."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"

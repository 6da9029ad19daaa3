"""What the command line prints: messages on stderr, results on stdout (text or one JSON
object with ``--json``), tqdm progress bars unless ``--quiet``/``--json``; and the exit codes."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """Bad command-line usage or inputs, found before any work starts (exit code 2)."""


@contextmanager
def checking_inputs() -> Iterator[None]:
    """ValueErrors raised inside (bad config, missing file, unknown name) become UsageError."""
    try:
        yield
    except UsageError:
        raise
    except ValueError as error:
        raise UsageError(str(error)) from error


def _plain(value: Any) -> Any:
    """JSON-safe: NaN -> None, paths and numpy scalars -> str / float."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if hasattr(value, "item"):
        return _plain(value.item())
    return str(value)


class Console:
    """Where each kind of output goes, following ``--quiet`` and ``--json``."""

    def __init__(self, *, quiet: bool = False, as_json: bool = False) -> None:
        self.quiet = quiet
        self.as_json = as_json

    def info(self, message: str) -> None:
        """A progress or status line (stderr), silent with --quiet or --json."""
        if not (self.quiet or self.as_json):
            print(message, file=sys.stderr, flush=True)

    def error(self, message: str) -> None:
        print(f"tadrop: error: {message}", file=sys.stderr, flush=True)
        if self.as_json:
            print(json.dumps({"ok": False, "error": message}), flush=True)

    def result(self, payload: dict[str, Any], text: str) -> None:
        """The command's result: JSON on stdout with --json, else text unless --quiet."""
        if self.as_json:
            print(json.dumps(_plain({"ok": True, **payload}), indent=None), flush=True)
        elif not self.quiet:
            print(text, flush=True)

    @contextmanager
    def progress(self, description: str) -> Iterator[Callable[[int, int, str], None]]:
        """A ``progress(done, total, name)`` callback drawing a tqdm bar on stderr."""
        if self.quiet or self.as_json:
            yield lambda done, total, name: None
            return
        from tqdm import tqdm

        # disable=None: drawn on a terminal, silent when stderr is a file or a pipe (CI logs)
        bar = tqdm(
            desc=description,
            unit="tensor",
            file=sys.stderr,
            dynamic_ncols=True,
            leave=False,
            disable=None,
        )

        def update(done: int, total: int, name: str) -> None:
            bar.total = total
            bar.set_postfix_str(name[-40:], refresh=False)
            bar.update(done - bar.n)

        try:
            yield update
        finally:
            bar.close()


def format_table(rows: list[dict[str, Any]], columns: list[str], floats: str = "{:.4f}") -> str:
    """A plain-text table with aligned columns."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "nan" if math.isnan(value) else floats.format(value)
        return "" if value is None else str(value)

    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(columns)
    ]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True))]
    lines += [
        "  ".join(value.rjust(width) for value, width in zip(line, widths, strict=True))
        for line in cells
    ]
    return "\n".join(lines)


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return f"{size:.1f} TB"

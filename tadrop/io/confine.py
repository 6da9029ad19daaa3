"""Reads confined to a set of folders: the dashboard's data roots.

Inside `reads_confined_to(roots)` every file the checkpoint readers open and every config or
tokenizer file the writer copies must resolve (symlinks followed) inside one of `roots`; a
file that leads outside is refused before it is opened. Outside such a block nothing is
checked, so the command line reads what the user names, symlinked caches included.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from tadrop.io.errors import CheckpointError

_ROOTS: ContextVar[tuple[Path, ...] | None] = ContextVar("tadrop_read_roots", default=None)


class OutsideRootError(CheckpointError):
    """A file resolves outside the folders reads are confined to."""


def is_inside(path: Path, roots: Sequence[Path]) -> bool:
    """True when `path` is one of `roots` or lies under one (no symlink resolution here)."""
    return any(path == root or path.is_relative_to(root) for root in roots)


@contextmanager
def reads_confined_to(roots: Iterable[str | os.PathLike[str]]) -> Iterator[None]:
    """Within the block, `check_readable` refuses files resolving outside `roots`."""
    token = _ROOTS.set(tuple(Path(root).expanduser().resolve() for root in roots))
    try:
        yield
    finally:
        _ROOTS.reset(token)


def check_readable(path: Path, what: str = "file") -> None:
    """Raise OutsideRootError if reads are confined and `path` resolves outside the roots."""
    roots = _ROOTS.get()
    if roots is None:
        return
    resolved = Path(path).expanduser().resolve()
    if not is_inside(resolved, roots):
        shown = ", ".join(str(root) for root in roots)
        link = f" (a symlink to {resolved})" if resolved != Path(path).absolute() else ""
        raise OutsideRootError(
            f"{path}: this {what}{link} lies outside the data root ({shown}), so it is not "
            "read. Copy the file into the data root instead of linking to it, or start the "
            "dashboard with --data-root covering its folder."
        )

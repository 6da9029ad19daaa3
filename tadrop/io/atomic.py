"""Write files and folders so that a reader sees either the old version or the new one, whole.

Everything is written under a temporary name beside the target (same filesystem, so the final
`rename` is atomic), fsync'd, then renamed into place. On any exception, KeyboardInterrupt
included, the temporary copy is removed and the target is left as it was.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from tadrop.io.errors import CheckpointError


def temp_sibling(path: Path, tag: str) -> Path:
    """A hidden, unused name in `path`'s folder, e.g. `.merged.tadrop-tmp-1234-9f3a1c2e`."""
    return path.parent / f".{path.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's list of entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root`, `root` last."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if not path.is_symlink():
            fsync_path(path)
    fsync_path(root)


def remove_path(path: Path) -> None:
    """Delete a file, symlink or folder tree if it exists, ignoring errors."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def write_file_atomically(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Call `write(temp_path)` to create the file, then rename it to `path` (replacing it)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp_path = temp_sibling(path, "tmp")
    try:
        write(temp_path)
        fsync_path(temp_path)
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return path


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write `data` to `path` atomically (a reader never sees a half-written file)."""
    return write_file_atomically(path, lambda temp_path: temp_path.write_bytes(data))


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically."""
    return write_file_atomically(path, lambda temp_path: temp_path.write_text(text, encoding))


def replace_dir(new_dir: Path, target: Path, *, overwrite: bool) -> None:
    """Rename the complete folder `new_dir` to `target`.

    An existing `target` is replaced only with `overwrite=True`, and only now that the new
    folder is complete: old -> trash name, new -> target, then the trash is deleted.
    """
    if not (target.exists() or target.is_symlink()):
        os.rename(new_dir, target)
        fsync_path(target.parent)
        return
    if not overwrite:
        raise exists_error(target)
    trash = temp_sibling(target, "tadrop-old")
    os.rename(target, trash)
    try:
        os.rename(new_dir, target)
    except BaseException:
        os.rename(trash, target)
        raise
    fsync_path(target.parent)
    remove_path(trash)


def exists_error(target: Path) -> CheckpointError:
    return CheckpointError(
        f"{target}: already exists. Pass overwrite=True (command line: --overwrite) to replace "
        "it, or choose another output folder."
    )

"""Write files and folders so that a reader sees either the old version or the new one, whole.

Everything is written under a temporary name beside the target (same filesystem, so the final
`rename` is atomic), fsync'd, then renamed into place. On any exception, KeyboardInterrupt
(and the SIGTERM/SIGHUP of `tadrop.io.signals`) included, the temporary copy is removed and the
target is left as it was. An OSError about the output (disk full, read-only, no permission) is
reported as a CheckpointError naming the target, not the internal temporary name.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tadrop.io.errors import CheckpointError
from tadrop.io.stale import OWNER_FILE, STAGING_TAG, TRASH_TAG, clean_leftovers, write_owner

# Errors that are about the output whatever file they name.
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


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
    temp_path = temp_sibling(path, "tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temp_path)
        fsync_path(temp_path)
        os.replace(temp_path, path)
        fsync_path(path.parent)
    except BaseException as error:
        temp_path.unlink(missing_ok=True)
        _raise_about_output(error, path, temp_path)
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
    trash = temp_sibling(target, TRASH_TAG)
    os.rename(target, trash)
    try:
        if trash.is_dir() and not trash.is_symlink():
            write_owner(trash)  # so a run killed right now gets its old output back next time
        os.rename(new_dir, target)
    except BaseException:
        (trash / OWNER_FILE).unlink(missing_ok=True)
        os.rename(trash, target)
        raise
    fsync_path(target.parent)
    remove_path(trash)


def exists_error(target: Path) -> CheckpointError:
    return CheckpointError(
        f"{target}: already exists. Pass overwrite=True (command line: --overwrite) to replace "
        "it, or choose another output folder."
    )


@contextmanager
def atomic_dir(target: Path | str, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a new, empty staging folder beside `target`; fill it, and on leaving the block it
    is fsync'd and renamed to `target` in one step.

    An existing `target` folder is refused unless `overwrite` (then replaced only once the new
    one is complete, as `replace_dir`). On any exception, interrupts included, the staging
    folder is removed and `target` is untouched. Stale staging folders of killed earlier runs
    into `target` are removed first (see `tadrop.io.stale`).
    """
    target = Path(target).expanduser().absolute()
    staging = temp_sibling(target, STAGING_TAG)
    try:
        clean_leftovers(target)
        if target.exists() and not target.is_dir():
            raise CheckpointError(f"{target}: is a file, not a folder; choose another output path.")
        if target.exists() and not overwrite:
            raise exists_error(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        write_owner(staging)
        yield staging
        (staging / OWNER_FILE).unlink()
        fsync_tree(staging)
        replace_dir(staging, target, overwrite=overwrite)
    except BaseException as error:
        remove_path(staging)
        _raise_about_output(error, target, staging)


def _raise_about_output(error: BaseException, target: Path, temp: Path) -> None:
    """Re-raise `error`; an OSError about the output (or its temporary copy) becomes a
    CheckpointError naming `target`, not the temporary name."""
    if isinstance(error, CheckpointError) and str(temp) in str(error):
        # A nested write (one folder per EMR task) named its place inside our staging folder.
        raise type(error)(str(error).replace(str(temp), str(target))) from error
    if not isinstance(error, OSError):
        raise error
    named = [Path(name) for name in (error.filename, error.filename2) if name]
    ours = any(p in (target, target.parent) or p.is_relative_to(temp) for p in named)
    if error.errno not in _OUTPUT_ERRNOS and not ours:
        raise error  # e.g. an input file that vanished while being read
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free space on that disk (or raise the quota) or choose an output on another one"
    elif error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        advice = "the folder is read-only or not yours; choose a writable output folder"
    else:
        advice = "check the output folder and try again"
    raise CheckpointError(
        f"{target}: could not write the output ({error.strerror or error}); {advice}. "
        "Nothing was left half-written."
    ) from error

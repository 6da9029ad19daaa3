"""Staging and trash folders left behind by a killed run (SIGKILL, power loss), found next time.

`atomic_dir` writes an owner record (process id, host, the process's start time) into each
staging folder it makes and into the trash folder an overwrite moves the old output to. The
next write to the same place removes a leftover only when the record proves it is ours and its
process is gone; every other leftover is named in a warning, never deleted.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from pathlib import Path

OWNER_FILE = ".tadrop-owner.json"
STAGING_TAG = "tadrop-tmp"
TRASH_TAG = "tadrop-old"


class LeftoverWarning(UserWarning):
    """A temporary folder of another (or a still running) tadrop process was found and kept."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of proc(5), counted after the name


def owner_record(pid: int | None = None) -> dict[str, object]:
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "host": socket.gethostname(), "started": _start_time(pid)}


def write_owner(folder: Path) -> None:
    """Mark `folder` as made by this process (read back by `clean_leftovers`)."""
    (folder / OWNER_FILE).write_text(json.dumps(owner_record()), encoding="utf-8")


def _process_gone(record: dict[str, object]) -> bool:
    """True when the record names a process of this host that no longer runs."""
    pid = record.get("pid")
    if record.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    started = record.get("started")
    return started is not None and started != _start_time(pid)  # the pid was reused


def leftovers(target: Path) -> list[Path]:
    """Staging and trash folders of earlier writes to `target`, found beside it."""
    if not target.parent.is_dir():
        return []
    prefixes = tuple(f".{target.name}.{tag}-" for tag in (STAGING_TAG, TRASH_TAG))
    return sorted(path for path in target.parent.iterdir() if path.name.startswith(prefixes))


def _read_owner(folder: Path) -> dict[str, object] | None:
    try:
        record = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def clean_leftovers(target: Path) -> list[Path]:
    """Remove provably stale leftovers of writes to `target`; warn about the others.

    A stale trash folder is the previous output, moved aside by an overwrite that was killed
    before it finished: if `target` is missing it is put back. Returns the paths removed.
    """
    from tadrop.io.atomic import remove_path

    removed = []
    for path in leftovers(target):
        record = _read_owner(path) if path.is_dir() and not path.is_symlink() else None
        if record is None or not _process_gone(record):
            who = f"process {record.get('pid')} on {record.get('host')}" if record else "unknown"
            warnings.warn(
                f"{path}: a temporary folder of an earlier write to {target} (owner: {who}) is "
                "still there. If no tadrop run is writing there now, delete it.",
                LeftoverWarning,
                stacklevel=3,
            )
            continue
        if TRASH_TAG in path.name and not (target.exists() or target.is_symlink()):
            (path / OWNER_FILE).unlink()
            os.rename(path, target)  # the killed overwrite had moved the old output here
            continue
        remove_path(path)
        removed.append(path)
    return removed

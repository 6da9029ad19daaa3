"""Uploaded checkpoints: safetensors only, size-limited, written under the data root.

A safetensors file is an 8-byte header length, a JSON header and raw tensor bytes: nothing in
it is executed or unpickled. The header is checked here (by the library's own parser) before
the file is kept, and the library then opens it like any other checkpoint. An upload never
replaces a file: a second one with the same name is kept beside it under a numbered name.
No streamlit import.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from dashboard.paths import PathRefused, resolve_user_path, safe_file_name
from tadrop.io.errors import CheckpointError
from tadrop.io.safetensors_format import header_of_bytes

SUFFIX = ".safetensors"
UPLOAD_FOLDER = "uploads"


def check_safetensors_bytes(name: str, data: bytes) -> None:
    """Refuse bytes that are not a well-formed safetensors file (header only, no tensor read)."""
    try:
        header_of_bytes(name, data)
    except CheckpointError as error:
        raise PathRefused(str(error)) from None


def save_upload(
    name: str, data: bytes, folder: Path, *, limit_bytes: int, roots: Sequence[Path]
) -> Path:
    """Write an uploaded safetensors file into ``folder`` (atomically) and return its path.

    ``folder`` must resolve inside ``roots`` (a symlinked ``uploads/`` leading out is refused).
    The name is made safe; if it is taken, ``name-2.safetensors``, ``-3``... is used instead.
    """
    if not name.lower().endswith(SUFFIX):
        raise PathRefused(f"{name}: only {SUFFIX} files are accepted.")
    if len(data) > limit_bytes:
        raise PathRefused(
            f"{name}: {len(data) / 2**20:.1f} MB is over the upload limit of "
            f"{limit_bytes / 2**20:.0f} MB (set TADROP_UPLOAD_LIMIT_MB to change it)."
        )
    check_safetensors_bytes(name, data)
    folder = resolve_user_path(folder, roots)
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=SUFFIX)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        return _link_under_free_name(Path(temporary), folder, safe_file_name(name, suffix=SUFFIX))
    finally:
        Path(temporary).unlink(missing_ok=True)


def _link_under_free_name(temporary: Path, folder: Path, file_name: str) -> Path:
    """Give `temporary` the first free name of `file_name`, `stem-2`, ... (never replacing)."""
    stem = file_name.removesuffix(SUFFIX)
    target, number = folder / file_name, 1
    while True:
        try:
            os.link(temporary, target)  # fails if the name exists, unlike a rename
            return target
        except FileExistsError:
            number += 1
            target = folder / f"{stem}-{number}{SUFFIX}"

"""Uploaded checkpoints: safetensors only, size-limited, written under the data root.

A safetensors file is an 8-byte header length, a JSON header and raw tensor bytes: nothing in
it is executed or unpickled. The header is checked here before the file is kept, and the
library then opens it like any other checkpoint. No streamlit import.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

from dashboard.paths import PathRefused, safe_file_name

SUFFIX = ".safetensors"
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit


def check_safetensors_bytes(name: str, data: bytes) -> None:
    """Refuse bytes that are not a well-formed safetensors file (header only, no tensor read)."""
    if len(data) < 8:
        raise PathRefused(f"{name}: too short to be a safetensors file.")
    (header_length,) = struct.unpack("<Q", data[:8])
    if header_length > min(_MAX_HEADER_BYTES, len(data) - 8):
        raise PathRefused(f"{name}: not a safetensors file (header length {header_length}).")
    try:
        header = json.loads(data[8 : 8 + header_length])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PathRefused(f"{name}: not a safetensors file ({error}).") from None
    if not isinstance(header, dict):
        raise PathRefused(f"{name}: not a safetensors file (the header is not a JSON object).")


def save_upload(name: str, data: bytes, folder: Path, *, limit_bytes: int) -> Path:
    """Write an uploaded safetensors file into ``folder`` (atomically); returns its path."""
    if not name.lower().endswith(SUFFIX):
        raise PathRefused(f"{name}: only {SUFFIX} files are accepted.")
    if len(data) > limit_bytes:
        raise PathRefused(
            f"{name}: {len(data) / 2**20:.1f} MB is over the upload limit of "
            f"{limit_bytes / 2**20:.0f} MB (set TADROP_UPLOAD_LIMIT_MB to change it)."
        )
    check_safetensors_bytes(name, data)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / safe_file_name(name, suffix=SUFFIX)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=SUFFIX)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target

"""The statistics table of a family, cached on disk: reopening a family reads no tensor.

One parquet file per family and (a, b, eps) under ``$TADROP_HOME/cache/stats/``, named by a
hash of everything the table depends on: each checkpoint file's identity (resolved path,
size, modification time in ns and, for safetensors, a hash of its header), the matched tensor
names, the skipped tensors, (a, b, eps) and the table's format version. Any change to a file
gives a new name, so a stale table is never read. Written atomically (``save_stats``).
"""

from __future__ import annotations

import hashlib
import json
import struct
import warnings
from pathlib import Path

import pandas as pd

from tadrop.io import Checkpoint
from tadrop.stats.files import load_stats, save_stats
from tadrop.stats.row import SKETCH_POINTS

FORMAT_VERSION = 1  # bump when a column's meaning changes: old tables are ignored
_HEADER_MAX_BYTES = 1 << 27  # a larger "header" is not one: hash the length only


def stats_cache_dir() -> Path:
    """``$TADROP_HOME/cache/stats`` (the home folder rule of ``tadrop.zoo.load``)."""
    from tadrop.zoo.load import tadrop_home  # the zoo package is heavy: only when caching

    return tadrop_home() / "cache" / "stats"


def checkpoint_files(checkpoint: Checkpoint) -> list[Path]:
    """The files a checkpoint reads tensors from (a LoRA adapter: its files and its base's)."""
    files = getattr(checkpoint, "files", None)
    if callable(files):
        return [Path(path) for path in files()]
    nested = [
        path
        for part in (getattr(checkpoint, "adapter", None), getattr(checkpoint, "base", None))
        if isinstance(part, Checkpoint)
        for path in checkpoint_files(part)
    ]
    if nested:
        return nested
    source = Path(checkpoint.source)
    return sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]


def _safetensors_header_hash(path: Path) -> str:
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return "short"
        (length,) = struct.unpack("<Q", prefix)
        if length > _HEADER_MAX_BYTES:
            return f"length {length}"
        return hashlib.sha256(handle.read(length)).hexdigest()


def file_identity(path: Path) -> dict[str, object]:
    """What changes when a file is rewritten: path, size, mtime (ns), safetensors header."""
    resolved = path.resolve()
    status = resolved.stat()
    identity: dict[str, object] = {
        "path": str(resolved),
        "size": status.st_size,
        "mtime_ns": status.st_mtime_ns,
    }
    if resolved.suffix == ".safetensors":
        identity["header_sha256"] = _safetensors_header_hash(resolved)
    return identity


def family_key(family, a: float, b: float, eps: float) -> str:
    """A hash naming the statistics table of ``family`` at (a, b, eps)."""
    checkpoints = {"base": family.base, **{f"task:{k}": v for k, v in family.tasks.items()}}
    description = {
        "format": FORMAT_VERSION,
        "sketch_points": SKETCH_POINTS,
        "quantiles": [a, b, eps],
        "tensors": list(family.tensor_names),
        "key_map": family.key_map,
        "skipped": family.skipped,
        "files": {
            role: [file_identity(path) for path in checkpoint_files(checkpoint)]
            for role, checkpoint in checkpoints.items()
        },
    }
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cache_path(family, a: float, b: float, eps: float) -> Path:
    return stats_cache_dir() / f"{family_key(family, a, b, eps)}.parquet"


def read_cached(path: Path) -> pd.DataFrame | None:
    """The cached table at ``path``, or None if there is none (or it cannot be read)."""
    if not path.is_file():
        return None
    try:
        table = load_stats(path)
    except (OSError, ValueError):  # a damaged file: compute again and overwrite it
        return None
    table["layer"] = table["layer"].astype("Int64")
    return table


def write_cached(table: pd.DataFrame, path: Path) -> None:
    """Store ``table`` at ``path`` atomically; a cache that cannot be written only warns."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_stats(table, path)
    except OSError as error:
        warnings.warn(f"statistics not cached at {path}: {error}", RuntimeWarning, stacklevel=3)


def is_cached(family, a: float, b: float, eps: float) -> bool:
    """Whether ``compute_stats(family, a=a, b=b, eps=eps)`` would read its cached table."""
    return cache_path(family, a, b, eps).is_file()

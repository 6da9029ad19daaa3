"""Statistics tables on disk: parquet keeps the sketches and the provenance; CSV is flat."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from tadrop.io import atomic_write_bytes


def save_stats(table: pd.DataFrame, path: str | Path) -> Path:
    """Parquet keeps sketches and provenance; CSV drops the sketches (a flat table)."""
    path = Path(path)
    provenance = json.dumps(table.attrs.get("provenance", {}), default=str)
    if path.suffix == ".csv":
        atomic_write_bytes(path, table.drop(columns=["sketch"]).to_csv(index=False).encode())
        return path
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = table.copy()
    frame["sketch"] = [np.asarray(sketch, dtype=np.float64).tolist() for sketch in frame["sketch"]]
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    arrow = arrow.replace_schema_metadata(
        {**(arrow.schema.metadata or {}), b"tadrop_provenance": provenance.encode()}
    )
    buffer = io.BytesIO()
    pq.write_table(arrow, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_stats(path: str | Path) -> pd.DataFrame:
    """Read a table written by ``save_stats`` (parquet, with provenance and sketches)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"No statistics table at {path}; write one with `tadrop stats`.")
    if path.suffix == ".csv":
        return pd.read_csv(path)
    arrow = pq.read_table(path)
    table = arrow.to_pandas()
    table["sketch"] = [np.asarray(sketch, dtype=np.float64) for sketch in table["sketch"]]
    raw = (arrow.schema.metadata or {}).get(b"tadrop_provenance")
    table.attrs["provenance"] = json.loads(raw) if raw else {}
    return table

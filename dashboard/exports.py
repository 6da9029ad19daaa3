"""What the Export page writes: the merged checkpoint (EMR: task models and/or its compact
artifact), figure files, the statistics table as bytes, a zip, and the YAML config that
reproduces a run with the CLI. No streamlit import."""

from __future__ import annotations

import dataclasses
import io
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import yaml

from dashboard.figures import EXPORT_TEMPLATE
from dashboard.png import figures_to_png
from dashboard.runs import RunRecord
from dashboard.sources import FamilySource
from tadrop.config import validate_config
from tadrop.io import atomic_write_bytes
from tadrop.stats import save_stats

PLOTLY_JS = "plotly.min.js"
# what a result that writes parts (EMR) may write: label -> the method's ``output`` value
PART_LAYOUTS = {
    "Task models (one folder per task)": "task_models",
    "Compact artifact (unified vector, bit masks, rescalers)": "compact",
    "Both": "both",
}


def write_merged(
    result: Any, target: Path, *, overwrite: bool, layout: str | None = None
) -> tuple[Path, float | None]:
    """Write a run's merged model to ``target``; ``layout`` (one of ``PART_LAYOUTS``' values)
    chooses what a result that writes parts (EMR) writes. Returns the folder and, when the
    compact artifact was written, its size as a fraction of the K full task models."""
    if layout is not None and result.writes_parts:
        result = dataclasses.replace(result, params={**result.params, "output": layout})
    written = result.save(target, overwrite=overwrite)
    artifact = getattr(result, "artifact", None)
    return written, (artifact["size_ratio"] if artifact else None)


def figure_files(figures: Mapping[str, go.Figure], *, png: bool) -> dict[str, bytes]:
    """``name.html`` per figure (sharing one ``plotly.min.js``, so they open offline), and
    ``name.png`` when ``png`` (rendered by the local Chromium)."""
    from plotly.offline import get_plotlyjs

    figures = {
        name: go.Figure(figure).update_layout(template=EXPORT_TEMPLATE)
        for name, figure in figures.items()
    }
    files = {PLOTLY_JS: get_plotlyjs().encode()}
    for name, figure in figures.items():
        files[f"{name}.html"] = figure.to_html(include_plotlyjs="directory").encode()
    if png:
        for name, image in figures_to_png(figures).items():
            files[f"{name}.png"] = image
    return files


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    """A zip archive of the files (deflated)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def write_files(files: Mapping[str, bytes], folder: Path) -> list[Path]:
    """Write each file into ``folder`` atomically (a reader never sees half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [atomic_write_bytes(folder / name, data) for name, data in files.items()]


def statistics_bytes(stats: pd.DataFrame, suffix: str) -> bytes:
    """The statistics table as written by ``tadrop.stats.save_stats`` (.csv or .parquet)."""
    with tempfile.TemporaryDirectory() as folder:
        path = save_stats(stats, Path(folder) / f"stats{suffix}")
        return path.read_bytes()


def run_config(
    record: RunRecord,
    source: FamilySource,
    task_paths: Mapping[str, str],
    *,
    output: Path,
    folder: Path,
) -> dict[str, Any]:
    """The run config (``tadrop merge`` / ``tadrop eval``) of a run, validated by the library.

    ``task_paths``: task -> checkpoint path of the family the run merged; ``folder``: where
    the YAML will live (relative paths in it start there).
    """
    config: dict[str, Any] = {"name": record.label.lstrip("#").replace(" ", "_")}
    if source.is_demo:
        config["demo"] = {
            "zoo": source.demo_zoo,
            "size": source.demo_size,
            "tasks": list(source.task_names),
        }
    else:
        config["base"] = source.base
        config["models"] = dict(task_paths)
    config["method"] = record.method
    if record.method_params:
        config["method_params"] = _plain(record.method_params)
    config["sparsifier"] = record.sparsifier
    if record.sparsifier_params:
        config["sparsifier_params"] = _plain(record.sparsifier_params)
    for key in ("include", "exclude"):
        if getattr(source, key):
            config[key] = getattr(source, key)
    config["keys"] = source.keys
    if source.align_prefixes:
        config["align_prefixes"] = True
    config["output"] = {"path": str(output)}
    if record.results is not None:
        config["eval"] = {}
    validate_config(config, folder=folder)
    return config


def config_yaml(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as YAML-friendly Python values (no numpy scalars)."""
    return {key: value.item() if hasattr(value, "item") else value for key, value in values.items()}

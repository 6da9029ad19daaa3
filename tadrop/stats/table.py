"""The statistics table of a family: one row per task x tensor (``row.py``), with exact
quantile sketches of |tau|.

One row per task x tensor. The ``sketch`` column holds the exact quantiles of |tau| at
``SKETCH_GRID`` (0, 0.001, ..., 1; linear interpolation between order statistics, as
``torch.quantile``), so TADrop's d = Q_a / (Q_b + eps) for any (a, b) on the grid is
recomputed from the table alone, without reading a tensor again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from tadrop.io import check_finite
from tadrop.names import component_group, parse_name
from tadrop.quantiles.memory import keep_scratch_memory
from tadrop.sparsify.tadrop_drop import (
    DEFAULT_A,
    DEFAULT_B,
    DEFAULT_EPS,
    check_quantiles,
    drop_rate_of,
)
from tadrop.stats import cache as stats_cache
from tadrop.stats.row import SKETCH_POINTS, sorted_magnitudes, task_vector_stats, tensor_stats
from tadrop.task_vectors import ModelFamily, iter_task_vectors, resolve_device

COLUMNS = [
    "task",
    "tensor",
    "layer",
    "kind",
    "group",
    "param",
    "shape",
    "numel",
    "mean",
    "std",
    "mean_abs",
    "l2",
    "max_abs",
    "zero_frac",
    "kurtosis",
    "q_a",
    "q_b",
    "drop_rate",
    "sketch",
]


def compute_stats(
    family: ModelFamily,
    *,
    a: float = DEFAULT_A,
    b: float = DEFAULT_B,
    eps: float = DEFAULT_EPS,
    device: str | torch.device = "auto",
    progress: Callable[[int, int, str], None] | None = None,
    cache: bool = True,
) -> pd.DataFrame:
    """The statistics table of a family: one row per task x tensor (see ``COLUMNS``).

    ``cache``: read the table from ``$TADROP_HOME/cache/stats`` when the family's files are
    unchanged since it was computed (no tensor is read; ``progress`` then reports all tensors
    done at once), else compute it and write it there (see ``tadrop.stats.cache``).
    """
    check_quantiles(a, b, eps)
    path = stats_cache.cache_path(family, a, b, eps) if cache else None
    cached = stats_cache.read_cached(path) if path is not None else None
    if cached is not None:
        if progress is not None:
            total = len(family.tensor_names)
            progress(total, total, "statistics read from the cache")
        return cached
    with keep_scratch_memory():  # no page faults to reuse each row's scratch
        table = _compute_table(family, a, b, eps, device, progress)
    if path is not None:
        stats_cache.write_cached(table, path)
    return table


def _compute_table(family, a, b, eps, device, progress) -> pd.DataFrame:
    rows = []
    total = len(family.tensor_names)
    for done, (name, base, per_task) in enumerate(_task_vector_rows(family, a, b, eps, device)):
        parsed = parse_name(name)
        for task, stats in per_task:
            row = {
                "task": task,
                "tensor": name,
                "layer": parsed.layer,
                "kind": parsed.kind,
                "group": component_group(parsed.kind),
                "param": parsed.param,
                "shape": "x".join(str(size) for size in base.shape) or "scalar",
            }
            row.update(stats)
            rows.append(row)
        if progress is not None:
            progress(done + 1, total, name)
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["layer"] = table["layer"].astype("Int64")
    table.attrs["provenance"] = {
        "base": str(family.base.source),
        "tasks": {task: str(checkpoint.source) for task, checkpoint in family.tasks.items()},
        "a": a,
        "b": b,
        "eps": eps,
        "skipped": family.skipped,
    }
    return table


def _task_vector_rows(family: ModelFamily, a, b, eps, device):
    """(name, base tensor, [(task, statistics row)]) per tensor name. On the CPU each task
    vector is computed inside the statistics passes from the two checkpoints' tensors
    (``task_vector_stats``): no task vector is stored, and a NaN or Inf it shows sends both
    inputs through ``check_finite`` (which names the file). Elsewhere (CUDA) the task
    vectors come from ``iter_task_vectors``."""
    if resolve_device(device).type != "cpu":
        for tensor in iter_task_vectors(family, device=device):
            rows = [
                (task, tensor_stats(tensor.task_vectors[index], a, b, eps, name=tensor.name))
                for index, task in enumerate(family.task_names)
            ]
            yield tensor.name, tensor.base, rows
        return
    for name in family.tensor_names:
        base = family.base.get(name)
        rows = []
        for task in family.task_names:
            finetuned = family.get_task_tensor(task, name)
            try:
                stats = task_vector_stats(finetuned, base, a, b, eps, name=name)
            except ValueError:  # NaNs: name the checkpoint that holds them, if one does
                _check_inputs(family, task, name, finetuned, base)
                raise
            if not math.isfinite(stats["l2"]):  # an Inf (or an overflow of tau)
                _check_inputs(family, task, name, finetuned, base)
            rows.append((task, stats))
        yield name, base, rows


def _check_inputs(family: ModelFamily, task: str, name: str, finetuned, base) -> None:
    check_finite(name, base, family.base.source)
    check_finite(name, finetuned, family.tasks[task].source)


def sketch_matrix(table: pd.DataFrame) -> np.ndarray:
    """(rows, SKETCH_POINTS) float64 array of the table's sketches."""
    return np.stack([np.asarray(sketch, dtype=np.float64) for sketch in table["sketch"]])


def quantiles_from_sketch(
    table: pd.DataFrame, q: float, sketches: np.ndarray | None = None
) -> np.ndarray:
    """Q_q(|tau|) of every row: exact on the grid, linear between grid points."""
    if not 0 <= q <= 1:
        raise ValueError(f"Quantile level {q!r} is outside [0, 1].")
    sketches = sketch_matrix(table) if sketches is None else sketches
    position = q * (SKETCH_POINTS - 1)
    lower = min(int(math.floor(position + 1e-9)), SKETCH_POINTS - 1)
    upper = min(lower + 1, SKETCH_POINTS - 1)
    weight = max(position - lower, 0.0)
    return sketches[:, lower] + (sketches[:, upper] - sketches[:, lower]) * weight


def drop_rates_from_sketch(
    table: pd.DataFrame,
    a: float,
    b: float,
    eps: float = DEFAULT_EPS,
    sketches: np.ndarray | None = None,
) -> pd.Series:
    """TADrop's d = Q_a / (Q_b + eps), clamped to [0, 1], for every row, from sketches only."""
    check_quantiles(a, b, eps)
    sketches = sketch_matrix(table) if sketches is None else sketches
    q_a = quantiles_from_sketch(table, a, sketches)
    q_b = quantiles_from_sketch(table, b, sketches)
    return pd.Series(drop_rate_of(q_a, q_b, eps), index=table.index, name="drop_rate")


@dataclass(frozen=True)
class TensorCut:
    """TADrop on one tensor, from its sketch: Q_a, Q_b, the drop rate d and the |tau| below
    which entries are dropped (Q_d)."""

    q_a: float
    q_b: float
    drop_rate: float
    threshold: float


def tensor_cut(
    row: pd.DataFrame, a: float, b: float, eps: float, sketch: np.ndarray | None = None
) -> TensorCut:
    """``TensorCut`` of a one-row statistics table (``sketch``: its (1, SKETCH_POINTS) row)."""
    sketch = sketch_matrix(row) if sketch is None else sketch
    drop_rate = float(drop_rates_from_sketch(row, a, b, eps, sketches=sketch).iloc[0])
    q_a, q_b, threshold = (
        float(quantiles_from_sketch(row, q, sketch)[0]) for q in (a, b, drop_rate)
    )
    return TensorCut(q_a, q_b, drop_rate, threshold)


def overall_sparsity(table: pd.DataFrame, drop_rates: pd.Series) -> pd.Series:
    """Per task, the fraction of all entries dropped (numel-weighted mean of the rates)."""
    weighted = (drop_rates * table["numel"]).groupby(table["task"]).sum()
    return weighted / table.groupby("task")["numel"].sum()


def abs_histogram(tau: torch.Tensor, bins: int = 80, log: bool = False) -> pd.DataFrame:
    """Histogram of |tau| (log-spaced bins if ``log``; zeros are counted in the first bin)."""
    magnitude = sorted_magnitudes(tau)
    if log:
        positive = magnitude[magnitude > 0]
        low = float(positive[0]) if positive.size else 1e-12
        high = max(float(magnitude[-1]), low * 10)
        edges = np.geomspace(low, high, bins + 1)
        edges[0] = 0.0
    else:
        edges = np.linspace(0.0, max(float(magnitude[-1]), 1e-12), bins + 1)
    counts, edges = np.histogram(magnitude, bins=edges)
    return pd.DataFrame({"left": edges[:-1], "right": edges[1:], "count": counts})

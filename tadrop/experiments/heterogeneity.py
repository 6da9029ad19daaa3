"""How heterogeneous a family's task vectors are: the numbers the demo zoo promises.

TADrop's point is that tensors differ: its per-tensor drop rate d = Q_a / Q_b of |tau| is only
interesting when d differs between tensors. For each task, over the tensors fine-tuning
moved (at least ``MIN_NUMEL`` entries, under ``MAX_ZERO_FRACTION`` exact zeros: small vectors
and mostly untouched tensors say little about a distribution), this reports the 10th and 90th
percentiles of d and their difference (the spread), and the median d of each component kind.
A half-normal |tau| gives d = 0.344 at (0.5, 0.95) whatever its scale, so a spread near 0
means near-Gaussian task vectors. Computed from ``tadrop.stats.compute_stats`` tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tadrop.stats import compute_stats
from tadrop.task_vectors import ModelFamily

MIN_NUMEL = 1024
MAX_ZERO_FRACTION = 0.5
SPREAD_TARGET = 0.3  # docs/zoo.md: "most tasks" of each demo family reach it
A, B = 0.5, 0.95


def moved_tensors(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of tensors fine-tuning moved: >= MIN_NUMEL entries, < half of them zero."""
    keep = (table["numel"] >= MIN_NUMEL) & (table["zero_frac"] < MAX_ZERO_FRACTION)
    return table[keep]


def heterogeneity(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per task: tensors counted, p10 / p90 / spread of d, and median d per component kind.

    ``table`` is a ``compute_stats`` table; its ``drop_rate`` column is d at the table's (a, b).
    Percentiles use numpy's default (linear interpolation between order statistics).
    """
    summary = {}
    moved = moved_tensors(table)
    for task in table["task"].drop_duplicates():
        rows = moved[moved["task"] == task]
        if rows.empty:
            summary[task] = {"tensors": 0, "p10": None, "p90": None, "spread": None, "by_kind": {}}
            continue
        p10, p90 = np.percentile(rows["drop_rate"].to_numpy(), [10, 90])
        by_kind = rows.groupby("kind")["drop_rate"].median().sort_values()
        summary[task] = {
            "tensors": len(rows),
            "p10": round(float(p10), 4),
            "p90": round(float(p90), 4),
            "spread": round(float(p90 - p10), 4),
            "by_kind": {kind: round(float(d), 4) for kind, d in by_kind.items()},
        }
    return summary


def family_heterogeneity(family: ModelFamily) -> dict[str, Any]:
    """``heterogeneity`` of a family at (A, B), with how many tasks reach SPREAD_TARGET."""
    tasks = heterogeneity(compute_stats(family, a=A, b=B, device="cpu"))
    reached = sum(1 for t in tasks.values() if (t["spread"] or 0) >= SPREAD_TARGET)
    return {
        "a": A,
        "b": B,
        "min_numel": MIN_NUMEL,
        "max_zero_fraction": MAX_ZERO_FRACTION,
        "spread_target": SPREAD_TARGET,
        "tasks_reaching_target": reached,
        "tasks": tasks,
    }

"""Where a task's overall sparsity comes from: each tensor's share of the dropped entries.

TADrop's overall sparsity of a task is the numel-weighted mean of its per-tensor drop rates,
sum_t numel_t d_t / sum_t numel_t. A tensor's contribution is its term of that sum,
numel_t d_t / sum numel; the contributions of a task add up to its overall sparsity. Two
situations make the overall number misleading, and are named here:

- a dominant tensor (a word embedding holding half the parameters): the overall sparsity is
  mostly that tensor's d, so moving b swings it with that one tensor;
- zero-heavy tensors (rows of an embedding the task never saw, frozen tensors): once the
  fraction of exact zeros in tau exceeds a, Q_a(|tau|) = 0 and d = Q_a / (Q_b + eps) = 0, so
  the tensor drops nothing whatever b is. Rows that weight decay or rounding left *near* zero
  do the same up to a little: Q_a is then a tiny fraction of Q_b, and so is d (the quick text
  demo's word embedding: Q_a = 6e-7, Q_b = 2e-4, d = 0.003). Both count as mostly zeros here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# A tensor dominates the overall sparsity when it holds at least this share of the parameters.
DOMINANT_SHARE = 0.25
# A tensor is zero-heavy when more than this fraction of its task-vector entries is exactly 0
# (at TADrop's default a = 0.5, such a tensor has Q_a = 0, hence d = 0).
ZERO_HEAVY_FRACTION = 0.5
# A tensor is near-zero-heavy when d = Q_a / (Q_b + eps) is below this: the lower a-fraction of
# |tau| is under 1% of Q_b, next to nothing beside the entries the task moved.
NEAR_ZERO_DROP_RATE = 0.01

CONTRIBUTION_COLUMNS = [
    "task",
    "tensor",
    "kind",
    "numel",
    "param_share",
    "drop_rate",
    "dropped_share",
    "zero_frac",
    "zero_heavy",
    "mostly_zero",
]


def tensor_contributions(table: pd.DataFrame, drop_rates: pd.Series) -> pd.DataFrame:
    """One row per task x tensor (``CONTRIBUTION_COLUMNS``): its share of the task vector's
    entries (``param_share``), its drop rate d and its share of the entries dropped
    (``dropped_share`` = numel x d / the task's numel; a task's shares add up to its overall
    sparsity). ``table`` needs ``task, tensor, kind, numel, zero_frac``; ``drop_rates`` is
    aligned with it by index, as ``tadrop.stats.overall_sparsity`` takes them."""
    missing = [
        column for column in ("task", "tensor", "kind", "numel", "zero_frac") if column not in table
    ]
    if missing:
        raise ValueError(
            f"The statistics table lacks the column(s) {', '.join(missing)}; compute it with "
            "tadrop.stats.compute_stats (or `tadrop stats`) and pass that table."
        )
    numel = table["numel"].astype("float64")
    task_numel = numel.groupby(table["task"]).transform("sum")
    contributions = table[["task", "tensor", "kind", "numel", "zero_frac"]].copy()
    contributions["param_share"] = numel / task_numel
    contributions["drop_rate"] = drop_rates.astype("float64")
    contributions["dropped_share"] = numel * contributions["drop_rate"] / task_numel
    contributions["zero_heavy"] = contributions["zero_frac"] > ZERO_HEAVY_FRACTION
    contributions["mostly_zero"] = contributions["zero_heavy"] | (
        contributions["drop_rate"] < NEAR_ZERO_DROP_RATE
    )
    return contributions[CONTRIBUTION_COLUMNS]


@dataclass(frozen=True)
class DominantTensor:
    """The tensor that holds at least ``DOMINANT_SHARE`` of a task vector's entries."""

    tensor: str
    param_share: float
    drop_rate: float
    rest_drop_rate: float  # numel-weighted d of every other tensor of the task


@dataclass(frozen=True)
class ZeroHeavyTensors:
    """A task's tensors whose tau is mostly zeros: more than ``ZERO_HEAVY_FRACTION`` exact
    zeros, or near zeros (d below ``NEAR_ZERO_DROP_RATE``)."""

    count: int
    exact: int  # how many of them have more than ZERO_HEAVY_FRACTION exact zeros
    param_share: float  # their share of the task vector's entries
    mean_drop_rate: float  # numel-weighted d over them
    biggest: str  # the largest of them by numel
    biggest_zero_frac: float
    biggest_drop_rate: float


@dataclass(frozen=True)
class SparsityFacts:
    """What explains one task's overall sparsity."""

    task: str
    overall: float
    tensors: int
    dominant: DominantTensor | None
    zero_heavy: ZeroHeavyTensors | None


def sparsity_facts(contributions: pd.DataFrame, task: str) -> SparsityFacts:
    """The dominant tensor and the zero-heavy tensors of one task of ``tensor_contributions``."""
    rows = contributions[contributions["task"] == task]
    if rows.empty:
        known = ", ".join(pd.unique(contributions["task"]).astype(str))
        raise ValueError(f"No task named {task!r} in the table; its tasks are: {known}.")
    return SparsityFacts(
        task=task,
        overall=float(rows["dropped_share"].sum()),
        tensors=len(rows),
        dominant=_dominant(rows),
        zero_heavy=_zero_heavy(rows),
    )


def _weighted_rate(rows: pd.DataFrame) -> float:
    numel = rows["numel"].astype("float64")
    return float((numel * rows["drop_rate"]).sum() / numel.sum()) if numel.sum() else 0.0


def _dominant(rows: pd.DataFrame) -> DominantTensor | None:
    largest = rows.loc[rows["param_share"].idxmax()]
    if largest["param_share"] < DOMINANT_SHARE:
        return None
    return DominantTensor(
        tensor=str(largest["tensor"]),
        param_share=float(largest["param_share"]),
        drop_rate=float(largest["drop_rate"]),
        rest_drop_rate=_weighted_rate(rows.drop(index=largest.name)),
    )


def _zero_heavy(rows: pd.DataFrame) -> ZeroHeavyTensors | None:
    heavy = rows[rows["mostly_zero"]]
    if heavy.empty:
        return None
    biggest = heavy.loc[heavy["numel"].idxmax()]
    return ZeroHeavyTensors(
        count=len(heavy),
        exact=int(heavy["zero_heavy"].sum()),
        param_share=float(heavy["param_share"].sum()),
        mean_drop_rate=_weighted_rate(heavy),
        biggest=str(biggest["tensor"]),
        biggest_zero_frac=float(biggest["zero_frac"]),
        biggest_drop_rate=float(biggest["drop_rate"]),
    )

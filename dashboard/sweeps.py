"""Sweeps over sparsity and over TADrop's (a, b): one merge per point, each scored by the
evaluation table's mean normalized accuracy (or, without evaluation data, the mean data-free
cosine). The grids are built by ``tadrop.config.sweep_grid``, as the CLI's sweeps are.
No streamlit import."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from dashboard.runs import RunRecord, diagnose_record, evaluate_record, execute_merge
from dashboard.sources import FamilySource
from tadrop.config import SweepConfig, sweep_grid
from tadrop.evaluate import Evaluator
from tadrop.sparsify.tadrop_drop import quantile_problem
from tadrop.task_vectors import ModelFamily

SweepProgress = Callable[[float, int, str], None]  # (points done, may be fractional; points; text)


def run_score(record: RunRecord) -> tuple[float, str]:
    """One number per run for sweeps: mean normalized accuracy, else mean diagnostic cosine."""
    if record.results is not None and not record.results.empty:
        column = "normalized" if record.results["normalized"].notna().any() else "merged"
        return float(record.results[column].mean()), f"mean {column}"
    if record.diagnostics is None:
        diagnose_record(record)
    return float(record.diagnostics["cosine"].mean()), "mean cosine (data-free)"


def parse_numbers(text: str) -> list[float]:
    """'0.1, 0.5 0.9' -> [0.1, 0.5, 0.9]; ValueError naming the bad entry."""
    values = []
    for part in text.replace(",", " ").split():
        try:
            values.append(float(part))
        except ValueError:
            raise ValueError(
                f"{part!r} is not a number; write numbers separated by commas."
            ) from None
    if not values:
        raise ValueError("Give at least one number.")
    return values


def empty_sweep() -> pd.DataFrame:
    return pd.DataFrame(columns=["sparsifier", "sparsity", "score", "score_kind", "setting"])


def empty_grid() -> pd.DataFrame:
    return pd.DataFrame(columns=["a", "b", "score", "score_kind", "sparsity"])


SWEPT_PARAMETER = {"dare": "p", "magnitude": "density", "tadrop": "a"}


def _sweep_values(sparsifier: str, levels: list[float], tadrop_as: list[float]) -> list[float]:
    if sparsifier == "tadrop":
        return tadrop_as
    if sparsifier == "magnitude":
        return [1.0 - level for level in levels]  # magnitude keeps a density
    return levels


def _score_points(
    family: ModelFamily,
    source: FamilySource,
    plan: list[tuple[str, str, dict[str, Any]]],
    *,
    method: str,
    method_params: dict[str, Any],
    evaluator: Evaluator | None,
    device: str,
    progress: SweepProgress | None,
) -> list[tuple[RunRecord, float, str]]:
    """Merge (and score) each (sparsifier, label, sparsifier_params) point of a plan.

    ``progress(done, total, text)`` is called within each merge and evaluation too (``done`` a
    fraction of points), so a Cancel reaches a long sweep within one tensor or task.
    """
    report = progress or (lambda done, total, text: None)
    scored = []
    for index, (sparsifier, label, sparsifier_params) in enumerate(plan):
        point = f"{index + 1}/{len(plan)}: {sparsifier} {label}"
        record = execute_merge(
            family,
            number=index + 1,
            method=method,
            sparsifier=sparsifier,
            method_params=method_params,
            sparsifier_params=sparsifier_params,
            family_label=source.label,
            family_key=source.key,
            device=device,
            progress=lambda done, total, name, index=index, point=point: report(
                index + 0.5 * done / total, len(plan), f"{point}, merging {name}"
            ),
        )
        if evaluator is not None:
            record.results = evaluate_record(
                record,
                evaluator,
                lambda fraction, text, index=index, point=point: report(
                    index + 0.5 + 0.5 * fraction, len(plan), f"{point}, {text}"
                ),
            )
        score, kind = run_score(record)
        record.result = None
        scored.append((record, score, kind))
    report(len(plan), len(plan), "done")
    return scored


def sweep(
    family: ModelFamily,
    source: FamilySource,
    *,
    method: str,
    method_params: dict[str, Any],
    sparsifiers: Sequence[str],
    levels: list[float],
    tadrop_as: list[float],
    b: float,
    eps: float,
    evaluator: Evaluator | None,
    device: str,
    progress: SweepProgress | None = None,
) -> pd.DataFrame:
    """Score against sparsity: one merge per sparsifier and level (the grid from tadrop.config)."""
    plan = []
    for sparsifier in sparsifiers:
        swept = SWEPT_PARAMETER[sparsifier]
        fixed = {"b": b, "eps": eps} if sparsifier == "tadrop" else {}
        axis = SweepConfig(sparsifier_params={swept: _sweep_values(sparsifier, levels, tadrop_as)})
        for label, _, params in sweep_grid(method_params, fixed, axis):
            plan.append((sparsifier, label, params))
    scored = _score_points(
        family,
        source,
        plan,
        method=method,
        method_params=method_params,
        evaluator=evaluator,
        device=device,
        progress=progress,
    )
    rows = [
        {
            "sparsifier": record.sparsifier,
            "sparsity": record.mean_sparsity,
            "score": score,
            "score_kind": kind,
            "setting": label,
        }
        for (_, label, _), (record, score, kind) in zip(plan, scored, strict=True)
    ]
    return pd.DataFrame(rows, columns=empty_sweep().columns)


def sensitivity_grid(
    family: ModelFamily,
    source: FamilySource,
    *,
    method: str,
    method_params: dict[str, Any],
    a_values: list[float],
    b_values: list[float],
    eps: float,
    evaluator: Evaluator | None,
    device: str,
    progress: SweepProgress | None = None,
) -> pd.DataFrame:
    """Score of TADrop merges over every valid (a, b) (0 < a < b < 1; other pairs are skipped)."""
    axis = SweepConfig(sparsifier_params={"a": a_values, "b": b_values})
    plan = [
        ("tadrop", label, params)
        for label, _, params in sweep_grid(method_params, {"eps": eps}, axis)
        if quantile_problem(params["a"], params["b"]) is None  # eps is checked by the merge
    ]
    if not plan:
        raise ValueError("No (a, b) pair with a < b in the grid; TADrop needs a < b.")
    scored = _score_points(
        family,
        source,
        plan,
        method=method,
        method_params=method_params,
        evaluator=evaluator,
        device=device,
        progress=progress,
    )
    rows = [
        {
            "a": params["a"],
            "b": params["b"],
            "score": score,
            "score_kind": kind,
            "sparsity": record.mean_sparsity,
        }
        for (_, _, params), (record, score, kind) in zip(plan, scored, strict=True)
    ]
    return pd.DataFrame(rows, columns=empty_grid().columns)

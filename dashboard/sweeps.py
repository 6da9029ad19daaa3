"""Sweeps over sparsity and over TADrop's (a, b) on the Merge page: the points come from
``tadrop.experiments`` and run through its ``run_points`` (the loop the CLI and the report use);
each is scored by the evaluation table's mean normalized accuracy (or, without evaluation
data, the mean data-free cosine). No streamlit import."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dashboard.runs import RunRecord, diagnose_record, record_of
from dashboard.sources import FamilySource
from tadrop.evaluate import Evaluator, evaluate
from tadrop.experiments import (
    Point,
    QuantileSetting,
    ab_points,
    matched_sparsity_points,
    run_points,
    solve_tadrop_a,
)
from tadrop.experiments.sweeps import SweepProgress
from tadrop.task_vectors import ModelFamily


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
    return pd.DataFrame(
        columns=["sparsifier", "target", "sparsity", "a", "b", "score", "score_kind", "setting"]
    )


def empty_grid() -> pd.DataFrame:
    return pd.DataFrame(columns=["a", "b", "score", "score_kind", "sparsity"])


def _score_points(
    family: ModelFamily,
    source: FamilySource,
    points: list[Point],
    *,
    evaluator: Evaluator | None,
    device: str,
    progress: SweepProgress | None,
) -> list[tuple[Point, RunRecord, float, str]]:
    """(point, record, score, score kind) of each point; the merged tensors are not kept."""

    def evaluation(result, report) -> pd.DataFrame:
        return evaluate(result, evaluator, result.family.task_names, progress=report)

    scored = []
    for index, run in enumerate(
        run_points(
            family,
            points,
            score=None if evaluator is None else evaluation,
            device=device,
            progress=progress,
        )
    ):
        record = record_of(
            run.result,
            number=index + 1,
            asked=(run.point.method, run.point.sparsifier or "none"),
            family=(source.label, source.key),
            seconds=run.merge_seconds,
        )
        record.results = run.score
        score, kind = run_score(record)
        record.result = None
        scored.append((run.point, record, score, kind))
    return scored


def solved_settings(
    stats: pd.DataFrame, sketches: np.ndarray, targets: Sequence[float], *, b: float, eps: float
) -> list[QuantileSetting]:
    """TADrop's (a, b) for each target overall sparsity, b kept (``solve_tadrop_a``)."""
    return [solve_tadrop_a(stats, sketches, target, b=b, eps=eps) for target in targets]


def sweep(
    family: ModelFamily,
    source: FamilySource,
    *,
    method: str,
    method_params: dict[str, Any],
    sparsifiers: Sequence[str],
    targets: Sequence[float],
    tadrop_settings: Sequence[QuantileSetting] = (),
    eps: float,
    evaluator: Evaluator | None,
    device: str,
    baseline: bool = True,
    progress: SweepProgress | None = None,
) -> pd.DataFrame:
    """Score against sparsity: each sparsifier at each target overall sparsity (TADrop at its
    solved (a, b)), then the merge without a sparsifier. One row per point: the target and the
    sparsity the merge reached."""
    matched = matched_sparsity_points(
        method, method_params, sparsifiers, targets, tadrop_settings, eps=eps, baseline=baseline
    )
    scored = _score_points(
        family,
        source,
        [point.point for point in matched],
        evaluator=evaluator,
        device=device,
        progress=progress,
    )
    rows = [
        {
            "sparsifier": point.series,
            "target": point.target,
            "sparsity": record.mean_sparsity,
            "a": record.sparsifier_params.get("a") if point.series == "tadrop" else None,
            "b": record.sparsifier_params.get("b") if point.series == "tadrop" else None,
            "score": score,
            "score_kind": kind,
            "setting": ran.label,
        }
        for point, (ran, record, score, kind) in zip(matched, scored, strict=True)
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
    """Score of TADrop merges over every (a, b) with a < b (pairs with a >= b are skipped)."""
    points = ab_points(method, method_params, a_values, b_values, {"eps": eps})
    rows = [
        {
            "a": point.sparsifier_params["a"],
            "b": point.sparsifier_params["b"],
            "score": score,
            "score_kind": kind,
            "sparsity": record.mean_sparsity,
        }
        for point, record, score, kind in _score_points(
            family, source, points, evaluator=evaluator, device=device, progress=progress
        )
    ]
    return pd.DataFrame(rows, columns=empty_grid().columns)

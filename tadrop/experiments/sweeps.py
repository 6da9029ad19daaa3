"""The one sweep loop: a list of (method params, sparsifier params) points -> merge each ->
score each with a caller's function -> one record per point.

The CLI (``tadrop merge``/``tadrop eval`` over a config's ``sweep:``), the dashboard's sweeps
and the reproduction report all run their points through ``run_points``. Progress is one
callback for the whole sweep (points done, fractional within a point), so a Cancel raised from
it, or a ``cancel()`` returning True, stops a long sweep within one tensor or task."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tadrop.config import SweepConfig, sweep_grid
from tadrop.merge import MergeMethod, MergeResult, run_merge
from tadrop.merge.base import Cancel
from tadrop.registry import build_merge
from tadrop.sparsify import Sparsifier
from tadrop.sparsify.tadrop_drop import DEFAULT_EPS, quantile_problem
from tadrop.stats import drop_rates_from_sketch, overall_sparsity
from tadrop.task_vectors import ModelFamily

SweepProgress = Callable[[float, int, str], None]  # (points done, may be fractional; points; text)
ScoreProgress = Callable[[float, str], None]  # (fraction of this point's scoring done, text)
Score = Callable[[MergeResult, ScoreProgress], Any]
SWEPT_PARAMETER = {"dare": "p", "magnitude": "density", "tadrop": "a"}


@dataclass(frozen=True)
class Point:
    """One merge of a sweep, by registry names (presets allowed) and parameter dicts."""

    label: str
    method: str
    sparsifier: str | None = None
    method_params: dict[str, Any] = field(default_factory=dict)
    sparsifier_params: dict[str, Any] = field(default_factory=dict)

    def build(self) -> tuple[MergeMethod, Sparsifier | None]:
        """The validated (MergeMethod, Sparsifier | None) pair (tadrop.registry)."""
        return build_merge(self.method, self.sparsifier, self.method_params, self.sparsifier_params)


@dataclass
class PointRun:
    """What one point gave: the merge, its time, and the score function's answer."""

    point: Point
    result: MergeResult
    merge_seconds: float
    score: Any = None
    eval_seconds: float = 0.0

    @property
    def mean_sparsity(self) -> float:
        sparsity = self.result.sparsity()
        return sum(sparsity.values()) / max(len(sparsity), 1)


def run_points(
    family: ModelFamily,
    points: Sequence[Point],
    *,
    score: Score | None = None,
    device: str = "auto",
    progress: SweepProgress | None = None,
    cancel: Cancel | None = None,
) -> Iterator[PointRun]:
    """Merge each point with ``run_merge`` and score it with ``score(result, progress)``.

    A generator: the caller sees each point as soon as it is done (and may drop its merged
    tensors before the next). Without ``score`` the merge takes the whole of a point's progress.
    """
    report = progress or (lambda done, total, text: None)
    share = 1.0 if score is None else 0.5
    total = len(points)
    for index, point in enumerate(points):
        name = f"{index + 1}/{total}: {point.label or point.method}"
        method, sparsifier = point.build()
        started = time.perf_counter()
        result = run_merge(
            family,
            method,
            sparsifier,
            device=device,
            cancel=cancel,
            progress=lambda done, tensors, tensor, index=index, name=name: report(
                index + share * done / tensors, total, f"{name}, merging {tensor}"
            ),
        )
        run = PointRun(point, result, time.perf_counter() - started)
        if score is not None:
            started = time.perf_counter()
            run.score = score(
                result,
                lambda fraction, text, index=index, name=name: report(
                    index + share + (1 - share) * fraction, total, f"{name}, {text}"
                ),
            )
            run.eval_seconds = time.perf_counter() - started
        yield run
    report(total, total, "done")


def grid_points(
    method: str,
    sparsifier: str | None,
    method_params: dict[str, Any],
    sparsifier_params: dict[str, Any],
    sweep: SweepConfig | None,
) -> list[Point]:
    """The points of a config-style sweep (``tadrop.config.sweep_grid``: one without a sweep)."""
    return [
        Point(label, method, sparsifier, point_method, point_sparsifier)
        for label, point_method, point_sparsifier in sweep_grid(
            method_params, sparsifier_params, sweep
        )
    ]


def sparsity_points(
    method: str,
    method_params: dict[str, Any],
    sparsifiers: Iterable[str],
    levels: Sequence[float],
    tadrop_as: Sequence[float],
    tadrop_fixed: dict[str, Any],
) -> list[Point]:
    """Points against sparsity: each sparsifier at each drop level (TADrop: at each ``a``, its
    other parameters from ``tadrop_fixed``; magnitude keeps a density = 1 - level)."""
    points: list[Point] = []
    for sparsifier in sparsifiers:
        if sparsifier == "tadrop":
            values, fixed = list(tadrop_as), dict(tadrop_fixed)
        else:
            values = [1.0 - level for level in levels] if sparsifier == "magnitude" else levels
            fixed = {}
        axis = SweepConfig(sparsifier_params={SWEPT_PARAMETER[sparsifier]: list(values)})
        points += grid_points(method, sparsifier, method_params, fixed, axis)
    return points


def ab_points(
    method: str,
    method_params: dict[str, Any],
    a_values: Sequence[float],
    b_values: Sequence[float],
    fixed: dict[str, Any],
) -> list[Point]:
    """TADrop at every (a, b) with a < b (other pairs skipped); ValueError when none is left."""
    axis = SweepConfig(sparsifier_params={"a": list(a_values), "b": list(b_values)})
    points = [
        point
        for point in grid_points(method, "tadrop", method_params, fixed, axis)
        # TADrop's own check (eps is checked by the merge)
        if quantile_problem(point.sparsifier_params["a"], point.sparsifier_params["b"]) is None
    ]
    if not points:
        raise ValueError("No (a, b) pair with a < b in the grid; TADrop needs a < b.")
    return points


# Fig. 1 with matched sparsity: every sparsifier is run at the same target overall sparsities.
MATCHED_SPARSIFIERS = ("tadrop", "uniform", "dare", "magnitude")
BASELINE = "none"  # the series of the merge without a sparsifier (registry name)
A_FLOOR = 1e-4  # the lowest a searched (TADrop needs 0 < a)
A_GAP = 1e-6  # the highest a searched is b - A_GAP (TADrop needs a < b)


@dataclass(frozen=True)
class QuantileSetting:
    """TADrop's (a, b) for a target overall sparsity, and the sparsity the sketches give."""

    a: float
    b: float
    target: float
    reached: float


@dataclass(frozen=True)
class MatchedPoint:
    """One point of the matched sweep: its series (a sparsifier of MATCHED_SPARSIFIERS or
    BASELINE), the target overall sparsity, and the merge to run."""

    series: str
    target: float
    point: Point
    setting: QuantileSetting | None = None  # TADrop's solved (a, b)


def tadrop_sparsity(
    stats: pd.DataFrame, sketches: np.ndarray, a: float, b: float, eps: float = DEFAULT_EPS
) -> float:
    """TADrop's overall sparsity at (a, b) from the quantile sketches alone: per task the
    numel-weighted mean of the tensors' d (``tadrop.stats.overall_sparsity``), averaged over
    tasks, as ``PointRun.mean_sparsity`` reports a merge's."""
    rates = drop_rates_from_sketch(stats, a, b, eps, sketches=sketches)
    return float(overall_sparsity(stats, rates).mean())


def solve_tadrop_a(
    stats: pd.DataFrame,
    sketches: np.ndarray,
    target: float,
    *,
    b: float,
    eps: float = DEFAULT_EPS,
    tolerance: float = 1e-4,
) -> QuantileSetting:
    """The a that gives ``target`` overall sparsity with b kept (bisection on a in (0, b)).

    d = Q_a / (Q_b + eps) never falls as a grows (Q_a is non-decreasing in a), so neither does
    the overall sparsity: about Q_0 / Q_b at a -> 0, about 1 at a -> b for every tensor with
    Q_b > 0 (tensors with Q_b = 0, e.g. mostly zeros, drop nothing at any a). A target beyond
    that range gives the nearest end; ``reached`` says what the sketches give there.
    """
    problem = quantile_problem(A_FLOOR, b, eps)
    if problem is not None:
        raise ValueError(problem)
    if not 0 <= target <= 1:
        raise ValueError(f"Target sparsity {target!r} is outside [0, 1]; give a fraction.")
    low, high = A_FLOOR, b - A_GAP
    reached_low = tadrop_sparsity(stats, sketches, low, b, eps)
    reached_high = tadrop_sparsity(stats, sketches, high, b, eps)
    if target <= reached_low:
        return QuantileSetting(low, b, target, reached_low)
    if target >= reached_high:
        return QuantileSetting(high, b, target, reached_high)
    a, reached = high, reached_high
    for _ in range(60):  # bisection: the interval halves each step
        a = (low + high) / 2
        reached = tadrop_sparsity(stats, sketches, a, b, eps)
        if abs(reached - target) <= tolerance:
            break
        low, high = (a, high) if reached < target else (low, a)
    return QuantileSetting(a, b, target, reached)


def uniform_rate_params(sparsity: float) -> dict[str, Any]:
    """Magnitude's parameters for one drop rate in every tensor, rescaled like TADrop (L2): the
    paper's uniform-rate contrast."""
    return {"density": 1.0 - sparsity, "scope": "tensor", "rescale": "l2"}


def matched_sparsity_points(
    method: str,
    method_params: dict[str, Any],
    sparsifiers: Iterable[str],
    targets: Sequence[float],
    tadrop_settings: Sequence[QuantileSetting] = (),
    *,
    eps: float = DEFAULT_EPS,
    baseline: bool = True,
) -> list[MatchedPoint]:
    """Each sparsifier at each target overall sparsity (DARE: p = target; magnitude: density =
    1 - target; uniform: magnitude with L2 rescale; TADrop: the solved (a, b) of
    ``tadrop_settings``, one per target), then the merge without a sparsifier at 0."""
    sparsifiers = list(sparsifiers)
    if "tadrop" in sparsifiers and len(tadrop_settings) != len(targets):
        raise ValueError("TADrop needs one solved (a, b) per target: pass tadrop_settings.")
    points: list[MatchedPoint] = []
    for series in sparsifiers:
        if series not in MATCHED_SPARSIFIERS:
            raise ValueError(f"Unknown sweep sparsifier {series!r}; use {MATCHED_SPARSIFIERS}.")
        for index, target in enumerate(targets):
            setting = tadrop_settings[index] if series == "tadrop" else None
            name, params = _sparsifier_at(series, target, setting, eps)
            label = f"{series} at {target:g}"
            point = Point(label, method, name, dict(method_params), params)
            points.append(MatchedPoint(series, target, point, setting))
    if baseline:
        plain = Point("no sparsifier", method, BASELINE, dict(method_params), {})
        points.append(MatchedPoint(BASELINE, 0.0, plain))
    return points


def _sparsifier_at(
    series: str, target: float, setting: QuantileSetting | None, eps: float
) -> tuple[str, dict[str, Any]]:
    """(registry sparsifier, parameters) of one series at one target sparsity."""
    if setting is not None:  # TADrop at its solved (a, b)
        return "tadrop", {"a": setting.a, "b": setting.b, "eps": eps}
    if series == "uniform":
        return "magnitude", uniform_rate_params(target)
    if series == "dare":
        return "dare", {"p": target}
    return "magnitude", {"density": 1.0 - target}

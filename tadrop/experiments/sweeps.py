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

from tadrop.config import SweepConfig, sweep_grid
from tadrop.merge import MergeMethod, MergeResult, run_merge
from tadrop.merge.base import Cancel
from tadrop.registry import build_merge
from tadrop.sparsify import Sparsifier
from tadrop.sparsify.tadrop_drop import quantile_problem
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

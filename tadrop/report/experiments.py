"""The experiments of the reproduction report, over one demo zoo (a ``Bench``).

Every merged model is made by ``run_merge`` and scored by the bench's evaluator; nothing is
copied from the paper. Scaling coefficients (lambda of Task Arithmetic and TIES) are chosen the
same way for every method: the value of ``Settings.scalings`` with the best average accuracy on
the validation split; test accuracy is then measured once with that lambda. The merged delta is
linear in lambda for both methods (theta_pre + lambda * merged delta), so the grid is scored
from one merge at lambda = 1, and the chosen lambda is merged again for the test numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from tadrop.experiments import (
    ModelFor,
    Point,
    PointRun,
    base_state,
    finetuned_state,
    run_points,
    scaled_model_for,
    uniform_rate_params,
)
from tadrop.task_vectors import ModelFamily

# base_state, finetuned_state and scaled_model_for live in tadrop.experiments; named here too
# for code written against this module before they moved (import them from tadrop.experiments).
__all__ = [
    "Bench",
    "base_state",
    "ModelFor",
    "Row",
    "SETTINGS",
    "Settings",
    "finetuned_state",
    "scaled_model_for",
]


class Bench(Protocol):
    """A demo zoo ready to evaluate: its family and accuracy of any per-task model."""

    zoo: str
    size: str
    family: ModelFamily
    description: dict[str, Any]

    def accuracy(self, model_for: ModelFor, split: str) -> dict[str, float]:
        """Accuracy (0..1) per task of ``model_for(task)`` on ``split`` ("validation"/"test")."""

    def base_accuracy(self) -> dict[str, float]:
        """Test accuracy per task of the pre-trained backbone with the task's linear probe."""


@dataclass(frozen=True)
class Settings:
    """What a report at one size computes (quick: fewer grid points)."""

    scalings: tuple[float, ...]
    a_grid: tuple[float, ...]
    b_grid: tuple[float, ...]
    sweep_a: tuple[float, ...]  # Fig. 1: TADrop's a at b = 0.95 gives the sparsity levels
    max_tasks: int | None = None  # quick: the zoo's first tasks only, to run in a test
    max_examples: int | None = None  # quick: at most this many examples per split and task
    merge_fraction: float | None = None  # quick: merge only the last fraction of the tensors
    device: str = "cpu"


SETTINGS = {
    "quick": Settings(
        scalings=(0.3, 1.0),
        a_grid=(0.50,),
        b_grid=(0.90, 0.95),
        sweep_a=(0.35, 0.65),
        max_tasks=2,
        max_examples=64,
        merge_fraction=1 / 3,
    ),
    "full": Settings(
        scalings=(0.1, 0.3, 0.5, 0.7, 1.0),
        a_grid=(0.45, 0.50),
        b_grid=(0.80, 0.85, 0.90, 0.95, 0.99),
        sweep_a=(0.3, 0.4, 0.5, 0.6, 0.7),
    ),
}


@dataclass
class Row:
    """One evaluated model (or family of per-task models) of a table."""

    name: str
    accuracy: dict[str, float]
    sparsity: float | None = None  # mean over tasks of the fraction of entries dropped (merges)
    params: dict[str, Any] = field(default_factory=dict)
    merge_seconds: float = 0.0
    eval_seconds: float = 0.0

    @property
    def average(self) -> float:
        return sum(self.accuracy.values()) / max(len(self.accuracy), 1)


def timed_row(name: str, score: Callable[[], dict[str, float]]) -> Row:
    started = time.perf_counter()
    accuracy = score()
    return Row(name, accuracy, eval_seconds=time.perf_counter() - started)


def evaluate_model(
    bench: Bench, name: str, model_for: ModelFor, split: str = "test", **extra: Any
) -> Row:
    row = timed_row(name, lambda: bench.accuracy(model_for, split))
    for key, value in extra.items():
        setattr(row, key, value)
    return row


def _merged_row(bench: Bench, name: str, run: PointRun, method_repr: str) -> Row:
    row = Row(name, run.score or {}, sparsity=run.mean_sparsity, eval_seconds=run.eval_seconds)
    row.params = {"method": method_repr, "sparsifier": repr(run.result.sparsifier)}
    row.merge_seconds = run.merge_seconds
    return row


def merge_and_evaluate(bench: Bench, name: str, point: Point, device: str = "cpu") -> Row:
    """Merge one point (``tadrop.experiments.run_points``) and score it on the test split.

    Rows are cached on the bench by (method, parameters, sparsifier): a configuration that
    appears in two tables (e.g. EMR + TADrop in Tables 1 and 7) is merged and scored once.
    """
    merge_method, sparsifier = point.build()
    key = (repr(merge_method), repr(sparsifier))
    cache: dict = bench.__dict__.setdefault("_report_rows", {})
    if key not in cache:

        def test_accuracy(result, progress) -> dict[str, float]:
            return bench.accuracy(result.model_for, "test")

        (run,) = run_points(bench.family, [point], score=test_accuracy, device=device)
        cache[key] = _merged_row(bench, name, run, repr(merge_method))
    return replace(cache[key], name=name)


def tuned_row(
    bench: Bench,
    label: str,
    method: str,
    sparsifier: str | None,
    scalings: tuple[float, ...],
    device: str,
) -> tuple[Row, dict[float, float]]:
    """Choose lambda on the validation split, then score it on the test split.

    One merge at lambda = 1; every lambda is scored through ``scaled_model_for`` (exact, the
    merged delta being linear in lambda). The best mean validation accuracy wins (ties: the
    smaller lambda). Returns the test row and the validation score of every lambda.
    """

    def validation_scores(result, progress) -> dict[float, float]:
        scores = {}
        for scaling in scalings:
            accuracy = bench.accuracy(scaled_model_for(result, scaling), "validation")
            scores[scaling] = sum(accuracy.values()) / len(accuracy)
        return scores

    point = Point(label, method, sparsifier, {"scaling": 1.0})
    (run,) = run_points(bench.family, [point], score=validation_scores, device=device)
    scores = run.score
    best = max(scalings, key=lambda scaling: (scores[scaling], -scaling))
    test = evaluate_model(bench, label, scaled_model_for(run.result, best))
    name = f"{type(point.build()[0]).__name__}(scaling={best:g})"
    run.score, run.eval_seconds = test.accuracy, test.eval_seconds
    return _merged_row(bench, f"{label} (lambda={best:g})", run, name), scores


def main_table(bench: Bench, settings: Settings) -> tuple[list[Row], dict[str, dict[float, float]]]:
    """Tables 1/2: base, individual, and each method with and without TADrop."""
    family, device = bench.family, settings.device
    rows = [
        timed_row("Base (pre-trained, linear-probe heads)", bench.base_accuracy),
        evaluate_model(bench, "Individual fine-tuned", lambda task: finetuned_state(family, task)),
        merge_and_evaluate(bench, "Weight averaging", Point("", "averaging"), device),
    ]
    selections: dict[str, dict[float, float]] = {}
    for label, method, sparsifier in (
        ("Task Arithmetic", "task_arithmetic", None),
        ("Task Arithmetic + TADrop", "task_arithmetic", "tadrop"),
        ("TIES", "ties", None),
        ("TIES + TADrop", "ties", "tadrop"),
    ):
        row, scores = tuned_row(bench, label, method, sparsifier, settings.scalings, device)
        selections[label] = scores
        rows.append(row)
    rows.append(merge_and_evaluate(bench, "EMR", Point("", "emr"), device))
    rows.append(merge_and_evaluate(bench, "EMR + TADrop", Point("", "emr", "tadrop"), device))
    return rows, selections


def ablation_table(bench: Bench, settings: Settings) -> list[Row]:
    """Table 4 on EMR. With EMR's mask composition the sparsifier only selects entries (EMR's own
    rescalers set magnitudes), so the rescale variants run with ``sparsify="pre"`` (EMR over the
    sparsified, rescaled task vectors); the global-vs-tensor rows run in both compositions."""
    device = settings.device
    rows = []
    for label, tadrop_params, mode in (
        ("Global sparsification (uniform rate), mask", {"scope": "global"}, "mask"),
        ("Full TADrop, mask", {}, "mask"),
        ("Global sparsification (uniform rate), pre", {"scope": "global"}, "pre"),
        ("TADrop without rescale, pre", {"rescale": "none"}, "pre"),
        ("TADrop with 1/(1-d) rescale, pre", {"rescale": "inverse"}, "pre"),
        ("Full TADrop (L2 rescale), pre", {}, "pre"),
    ):
        point = Point(label, "emr", "tadrop", {"sparsify": mode}, tadrop_params)
        rows.append(merge_and_evaluate(bench, label, point, device))
    return rows


def quantile_grid(bench: Bench, settings: Settings) -> list[Row]:
    """Table 7: EMR + TADrop over the (a, b) grid."""
    device = settings.device
    return [
        merge_and_evaluate(
            bench, f"a={a:g}, b={b:g}", Point("", "emr", "tadrop", {}, {"a": a, "b": b}), device
        )
        for a in settings.a_grid
        for b in settings.b_grid
    ]


def sparsity_sweep(bench: Bench, settings: Settings) -> dict[str, list[Row]]:
    """Fig. 1 on EMR (``sparsify="pre"``): TADrop at several a (b = 0.95) against a uniform rate
    at the same overall sparsity (every tensor drops the same fraction of its smallest |tau|,
    with the same L2 rescale: the only difference is how the rate is spread over tensors)."""
    device = settings.device
    pre = {"sparsify": "pre"}
    adaptive = [
        merge_and_evaluate(
            bench, f"TADrop a={a:g}", Point("", "emr", "tadrop", pre, {"a": a, "b": 0.95}), device
        )
        for a in settings.sweep_a
    ]
    uniform = [
        merge_and_evaluate(
            bench,
            f"uniform {row.sparsity:.3f}",
            Point("", "emr", "magnitude", pre, uniform_rate_params(row.sparsity)),
            device,
        )
        for row in adaptive
    ]
    return {"TADrop (per-tensor rate)": adaptive, "Uniform rate (same sparsity)": uniform}

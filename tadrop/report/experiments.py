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

import torch

from tadrop.merge import MergeResult, run_merge
from tadrop.registry import build_merge
from tadrop.sparsify import Magnitude, Sparsifier, TADrop
from tadrop.task_vectors import ModelFamily

ModelFor = Callable[[str], dict[str, torch.Tensor]]


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


def base_state(family: ModelFamily) -> dict[str, torch.Tensor]:
    return {name: family.base.get(name) for name in family.base.keys()}


def finetuned_state(family: ModelFamily, task: str) -> dict[str, torch.Tensor]:
    """The fine-tuned checkpoint under the base's key names (unmatched tensors from the base)."""
    key_map = family.key_map[task]
    checkpoint = family.tasks[task]
    return {
        name: checkpoint.get(key_map[name]) if name in key_map else family.base.get(name)
        for name in family.base.keys()
    }


def scaled_model_for(result: MergeResult, scaling: float) -> ModelFor:
    """theta_pre + scaling * (merged - theta_pre) for a merge made at scaling 1."""
    base = base_state(result.family)

    def model_for(task: str) -> dict[str, torch.Tensor]:
        state = result.model_for(task, dtype=torch.float32)
        for name in result.merged:
            state[name] = (base[name].float() + scaling * (state[name] - base[name].float())).to(
                base[name].dtype
            )
        return state

    return model_for


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


def merge_and_evaluate(
    bench: Bench,
    name: str,
    method: str,
    sparsifier: Sparsifier | None,
    method_params: dict | None = None,
    device: str = "cpu",
) -> Row:
    """Merge with the library and score it on the test split.

    Rows are cached on the bench by (method, parameters, sparsifier): a configuration that
    appears in two tables (e.g. EMR + TADrop in Tables 1 and 7) is merged and scored once.
    """
    merge_method, _ = build_merge(method, None, method_params)
    key = (repr(merge_method), repr(sparsifier))
    cache: dict = bench.__dict__.setdefault("_report_rows", {})
    if key not in cache:
        started = time.perf_counter()
        result = run_merge(bench.family, merge_method, sparsifier, device=device)
        merge_seconds = time.perf_counter() - started
        sparsity = result.sparsity()
        row = evaluate_model(bench, name, result.model_for, "test")
        row.sparsity = sum(sparsity.values()) / len(sparsity)
        row.params = {"method": repr(merge_method), "sparsifier": repr(result.sparsifier)}
        row.merge_seconds = merge_seconds
        cache[key] = row
    return replace(cache[key], name=name)


def tuned_row(
    bench: Bench,
    label: str,
    method: str,
    sparsifier: Sparsifier | None,
    scalings: tuple[float, ...],
    device: str,
) -> tuple[Row, dict[float, float]]:
    """Choose lambda on the validation split, then score it on the test split.

    One merge at lambda = 1; every lambda is scored through ``scaled_model_for`` (exact, the
    merged delta being linear in lambda). The best mean validation accuracy wins (ties: the
    smaller lambda). Returns the test row and the validation score of every lambda.
    """
    merge_method, _ = build_merge(method, None, {"scaling": 1.0})
    started = time.perf_counter()
    result = run_merge(bench.family, merge_method, sparsifier, device=device)
    merge_seconds = time.perf_counter() - started
    scores = {}
    for scaling in scalings:
        accuracy = bench.accuracy(scaled_model_for(result, scaling), "validation")
        scores[scaling] = sum(accuracy.values()) / len(accuracy)
    best = max(scalings, key=lambda scaling: (scores[scaling], -scaling))
    row = evaluate_model(bench, f"{label} (lambda={best:g})", scaled_model_for(result, best))
    sparsity = result.sparsity()
    row.sparsity = sum(sparsity.values()) / len(sparsity)
    row.params = {
        "method": f"{type(merge_method).__name__}(scaling={best:g})",
        "sparsifier": repr(result.sparsifier),
    }
    row.merge_seconds = merge_seconds
    return row, scores


def main_table(bench: Bench, settings: Settings) -> tuple[list[Row], dict[str, dict[float, float]]]:
    """Tables 1/2: base, individual, and each method with and without TADrop."""
    family, device = bench.family, settings.device
    rows = [
        timed_row("Base (pre-trained, linear-probe heads)", bench.base_accuracy),
        evaluate_model(bench, "Individual fine-tuned", lambda task: finetuned_state(family, task)),
        merge_and_evaluate(bench, "Weight averaging", "averaging", None, device=device),
    ]
    selections: dict[str, dict[float, float]] = {}
    for label, method, sparsifier in (
        ("Task Arithmetic", "task_arithmetic", None),
        ("Task Arithmetic + TADrop", "task_arithmetic", TADrop()),
        ("TIES", "ties", None),
        ("TIES + TADrop", "ties", TADrop()),
    ):
        row, scores = tuned_row(bench, label, method, sparsifier, settings.scalings, device)
        selections[label] = scores
        rows.append(row)
    rows.append(merge_and_evaluate(bench, "EMR", "emr", None, device=device))
    rows.append(merge_and_evaluate(bench, "EMR + TADrop", "emr", TADrop(), device=device))
    return rows, selections


def ablation_table(bench: Bench, settings: Settings) -> list[Row]:
    """Table 4 on EMR. With EMR's mask composition the sparsifier only selects entries (EMR's own
    rescalers set magnitudes), so the rescale variants run with ``sparsify="pre"`` (EMR over the
    sparsified, rescaled task vectors); the global-vs-tensor rows run in both compositions."""
    device = settings.device
    rows = []
    for label, sparsifier, mode in (
        ("Global sparsification (uniform rate), mask", TADrop(scope="global"), "mask"),
        ("Full TADrop, mask", TADrop(), "mask"),
        ("Global sparsification (uniform rate), pre", TADrop(scope="global"), "pre"),
        ("TADrop without rescale, pre", TADrop(rescale="none"), "pre"),
        ("TADrop with 1/(1-d) rescale, pre", TADrop(rescale="inverse"), "pre"),
        ("Full TADrop (L2 rescale), pre", TADrop(), "pre"),
    ):
        rows.append(
            merge_and_evaluate(bench, label, "emr", sparsifier, {"sparsify": mode}, device=device)
        )
    return rows


def quantile_grid(bench: Bench, settings: Settings) -> list[Row]:
    """Table 7: EMR + TADrop over the (a, b) grid."""
    return [
        merge_and_evaluate(
            bench, f"a={a:g}, b={b:g}", "emr", TADrop(a=a, b=b), device=settings.device
        )
        for a in settings.a_grid
        for b in settings.b_grid
    ]


def sparsity_sweep(bench: Bench, settings: Settings) -> dict[str, list[Row]]:
    """Fig. 1 on EMR (``sparsify="pre"``): TADrop at several a (b = 0.95) against a uniform rate
    at the same overall sparsity (every tensor drops the same fraction of its smallest |tau|,
    with the same L2 rescale: the only difference is how the rate is spread over tensors)."""
    device = settings.device
    adaptive = [
        merge_and_evaluate(
            bench, f"TADrop a={a:g}", "emr", TADrop(a=a, b=0.95), {"sparsify": "pre"}, device=device
        )
        for a in settings.sweep_a
    ]
    uniform = [
        merge_and_evaluate(
            bench,
            f"uniform {row.sparsity:.3f}",
            "emr",
            Magnitude(density=1.0 - row.sparsity, scope="tensor", rescale="l2"),
            {"sparsify": "pre"},
            device=device,
        )
        for row in adaptive
    ]
    return {"TADrop (per-tensor rate)": adaptive, "Uniform rate (same sparsity)": uniform}

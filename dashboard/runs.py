"""Merge runs kept in a session for comparison: one record per run, and the tables built from
them. No streamlit: the Merge page passes a progress callback and stores the records."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dashboard.paths import resolve_user_path
from dashboard.sources import FamilySource
from tadrop.diagnostics import merge_diagnostics
from tadrop.evaluate import Evaluator, Scores, build_evaluator, evaluate, infer_kind
from tadrop.merge import MergeMethod, MergeResult, run_merge
from tadrop.registry import METHODS, SPARSIFIERS, build_merge, resolve_preset
from tadrop.sparsify import Sparsifier
from tadrop.task_vectors import ModelFamily

Progress = Callable[[int, int, str], None]
EvalProgress = Callable[[float, str], None]
KEEP_MERGED_MODELS = 2  # newest runs whose merged tensors stay in memory for export


@dataclass
class RunRecord:
    """One merge: what was asked, what came out, and (for the newest runs) the merged model."""

    number: int
    method: str
    sparsifier: str
    method_params: dict[str, Any]
    sparsifier_params: dict[str, Any]
    family_label: str
    family_key: str
    sparsity: dict[str, float]
    seconds: float
    result: MergeResult | None = None
    results: pd.DataFrame | None = None  # tadrop.evaluate table
    diagnostics: pd.DataFrame | None = None  # per task, tadrop.diagnostics
    pair_diagnostics: pd.DataFrame | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Short name shown in legends and tables, unique within a session."""
        sparsifier = "" if self.sparsifier == "none" else f" + {self.sparsifier}"
        settings = ""
        if self.sparsifier == "tadrop":
            settings = (
                f" (a={self.sparsifier_params.get('a')}, b={self.sparsifier_params.get('b')})"
            )
        return f"#{self.number} {self.method}{sparsifier}{settings}"

    @property
    def mean_sparsity(self) -> float:
        return sum(self.sparsity.values()) / max(len(self.sparsity), 1)


def classes_for(method: str, sparsifier: str) -> tuple[type[MergeMethod], type[Sparsifier] | None]:
    """The classes a (method, sparsifier) choice builds, presets resolved (for the inputs)."""
    method, chosen = resolve_preset(method, sparsifier)
    return METHODS[method], SPARSIFIERS.get(chosen or "")


def default_export_index(records: list[RunRecord]) -> int:
    """The run Export offers first: the newest one the user asked for, not the comparison run
    without the sparsifier made beside it (``extras["baseline_of"]``)."""
    asked = [i for i, record in enumerate(records) if "baseline_of" not in record.extras]
    return asked[-1] if asked else len(records) - 1


def execute_merge(
    family: ModelFamily,
    *,
    number: int,
    method: str,
    sparsifier: str,
    method_params: dict[str, Any],
    sparsifier_params: dict[str, Any],
    family_label: str,
    family_key: str,
    device: str,
    progress: Progress | None = None,
) -> RunRecord:
    """Build the method and sparsifier from the registry and merge the family."""
    merge_method, sparsify = build_merge(method, sparsifier, method_params, sparsifier_params)
    started = time.perf_counter()
    result = run_merge(family, merge_method, sparsify, device=device, progress=progress)
    return record_of(
        result,
        number=number,
        asked=(method, sparsifier),
        family=(family_label, family_key),
        seconds=time.perf_counter() - started,
    )


def record_of(
    result: MergeResult,
    *,
    number: int,
    asked: tuple[str, str],
    family: tuple[str, str],
    seconds: float,
) -> RunRecord:
    """The record of a finished merge; ``asked``: the (method, sparsifier) names chosen,
    ``family``: (label, key) of the family it merged."""
    method, sparsifier = asked
    return RunRecord(
        number=number,
        method=method,
        sparsifier=_sparsifier_name(method, sparsifier, result),
        method_params=dict(result.params),
        sparsifier_params={} if result.sparsifier is None else result.sparsifier.get_params(),
        family_label=family[0],
        family_key=family[1],
        sparsity=result.sparsity(),
        seconds=seconds,
        result=result,
    )


def _sparsifier_name(method: str, asked: str, result: MergeResult) -> str:
    """The sparsifier that ran: the one asked for, a preset's, or the method's default."""
    if result.sparsifier is not None:
        return result.sparsifier.name
    return resolve_preset(method, asked)[1] or "none"


def forget_old_models(records: list[RunRecord], keep: int = KEEP_MERGED_MODELS) -> None:
    """Drop the merged tensors of all but the newest ``keep`` runs (their tables stay)."""
    for record in records[:-keep] if keep else records:
        record.result = None


def results_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """The evaluation tables of the runs, stacked, with a ``run`` column."""
    tables = [
        record.results.assign(run=record.label)
        for record in records
        if record.results is not None and not record.results.empty
    ]
    if not tables:
        return pd.DataFrame(columns=["run", "task", "metric", "merged", "individual", "base"])
    stacked = pd.concat(tables, ignore_index=True)
    return stacked[["run", *[column for column in stacked.columns if column != "run"]]]


def runs_overview(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per run: settings, sparsity, time, and the mean of each evaluation column."""
    rows = []
    for record in records:
        row: dict[str, Any] = {
            "run": record.label,
            "family": record.family_label,
            "method": record.method,
            "sparsifier": record.sparsifier,
            "sparsity": record.mean_sparsity,
            "seconds": round(record.seconds, 2),
        }
        if record.results is not None and not record.results.empty:
            for column in ("merged", "normalized"):
                if column in record.results:
                    row[f"mean {column}"] = record.results[column].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def evaluate_record(
    record: RunRecord, evaluator: Evaluator, progress: EvalProgress | None = None
) -> pd.DataFrame:
    """The per-task evaluation table of a run (tadrop.evaluate: merged, individual, base,
    normalized)."""
    if record.result is None:
        raise ValueError(f"Run {record.label} no longer holds its merged model; run it again.")
    merged = record.result.family.task_names  # the merged tasks, maybe a subset of the zoo's
    scored = getattr(evaluator, "tasks", merged)  # own families: the tasks given data
    tasks = [task for task in merged if task in scored]
    if not tasks:
        raise ValueError(f"No evaluation data for the tasks of {record.label}: {merged}.")
    return evaluate(record.result, evaluator, tasks, progress=progress)


def diagnose_record(record: RunRecord) -> None:
    """Fill the run's data-free diagnostics (per task and per pair of tasks)."""
    if record.result is None:
        raise ValueError(f"Run {record.label} no longer holds its merged model; run it again.")
    record.diagnostics, record.pair_diagnostics = merge_diagnostics(record.result)


@dataclass(frozen=True)
class EvalSpec:
    """Evaluation data attached to an own family: hashable, so it keys the caches."""

    kind: str  # causal_lm | clip | sequence_classification
    data: tuple[tuple[str, str], ...]  # (task, resolved file or folder)
    metric: str = ""  # causal LMs: "" infers it from each file
    template: str = ""  # CLIP: "" is the evaluator's default prompt


def eval_spec(
    source: FamilySource,
    typed: Mapping[str, str],
    roots: Sequence[Path],
    *,
    kind: str = "",
    metric: str = "",
    template: str = "",
) -> EvalSpec | None:
    """The EvalSpec of the paths typed per task (under the data roots; PathRefused else), or
    None when no path is typed. ``kind`` "" reads it from the base's config.json."""
    data = []
    for task, text in typed.items():
        if not text.strip():
            continue
        path = resolve_user_path(text, roots)
        if not path.exists():
            raise ValueError(f"Task {task}: {path} does not exist.")
        data.append((task, str(path)))
    if not data:
        return None
    return EvalSpec(kind or infer_kind(source.base), tuple(data), metric, template)


def build_own_evaluator(
    source: FamilySource, spec: EvalSpec, device: str, task_names: Sequence[str]
) -> LockedEvaluator:
    """The evaluator of an EvalSpec (tadrop.evaluate), shareable between sessions;
    ``task_names`` are the family's, in the order of ``source.finetuned``."""
    options: dict[str, Any] = {}
    if spec.kind == "causal_lm":
        options["metric"] = spec.metric or None
    if spec.kind == "clip":
        options["template"] = spec.template or None
    models = dict(zip(task_names, source.finetuned, strict=True))
    evaluator = build_evaluator(
        spec.kind,
        base=source.base,
        data=dict(spec.data),
        models=models,
        options=options,
        device=device,
    )
    return LockedEvaluator(evaluator)


class LockedEvaluator:
    """An evaluator shared by every session: it loads each scored model into one module, so
    calls take turns on a lock. ``individual``/``base`` are its recorded reference scores."""

    def __init__(
        self, evaluator: Evaluator, individual: Scores | None = None, base: Scores | None = None
    ) -> None:
        self.evaluator = evaluator
        self._lock = threading.Lock()
        self._individual, self._base = individual or {}, base or {}

    def with_references(self, individual: Scores, base: Scores) -> LockedEvaluator:
        """The same evaluator and lock, reporting these individual and base scores."""
        shared = LockedEvaluator(self.evaluator, individual, base)
        shared._lock = self._lock
        return shared

    @property
    def tasks(self) -> list[str]:
        return list(self.evaluator.tasks)

    def individual_scores(self) -> Scores:
        return self._individual

    def base_scores(self) -> Scores:
        return self._base

    def evaluate(self, task: str, state_dict) -> dict[str, float]:
        with self._lock:
            return self.evaluator.evaluate(task, state_dict)

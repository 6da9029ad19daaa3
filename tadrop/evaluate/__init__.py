"""How good is a merge: evaluators and the per-task evaluation table.

An evaluator scores one state dict on one task: ``evaluate(task, state_dict) -> {metric: value,
metric_stderr: ..., n: ...}`` (``tadrop.evaluate.scores``). The merge supplies
``model_for(task)``, the state dict to score for each task (the same merged model for every
task, except EMR which rebuilds one per task). One module per kind of model:

- ``ZooEvaluator`` (zoo.py): the demo zoo's held-out sets;
- ``HFSequenceClassificationEvaluator`` (sequence.py): your sequence classifiers + CSV/JSONL;
- ``CausalLMEvaluator`` (causal_lm.py): perplexity, multiple choice, exact match;
- ``CLIPEvaluator`` (clip.py): zero-shot (or given heads) accuracy on image folders;
- ``HarnessEvaluator`` (harness.py): lm-evaluation-harness tasks, when ``lm_eval`` is installed.

    table = evaluate(result.model_for, load_zoo("text", "quick"))

gives one row per task and metric: ``merged``, ``individual`` (the task's fine-tuned model),
``base`` (the pretrained model), ``normalized = merged / individual`` (individual / merged
for perplexity, so 1 is "as good" and < 1 "worse" for every metric), the sample count ``n``
and each score's standard error. For the zoo, ``individual`` and ``base`` come from its
manifest, so only merged models run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from tadrop.evaluate.causal_lm import CausalLMEvaluator
from tadrop.evaluate.clip import CLIPEvaluator
from tadrop.evaluate.kinds import KINDS, build_evaluator, infer_kind
from tadrop.evaluate.scores import (
    COUNT,
    EvaluationError,
    Evaluator,
    Scores,
    StateDict,
    binomial_stderr,
    metric_names,
    normalized,
    score_tasks,
    stderr_of,
)
from tadrop.evaluate.sequence import HFSequenceClassificationEvaluator
from tadrop.evaluate.zoo import ZooEvaluator
from tadrop.zoo.load import Zoo

COLUMNS = [
    "task",
    "metric",
    "merged",
    "individual",
    "base",
    "normalized",
    "n",
    "merged_stderr",
    "individual_stderr",
    "base_stderr",
]


def evaluate(
    model_for: Callable[[str], StateDict] | Any,
    evaluator: Evaluator | Zoo,
    tasks: list[str] | None = None,
    *,
    individual: Scores | None = None,
    base: Scores | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> pd.DataFrame:
    """One row per task and metric: merged, individual, base, normalized, n, standard errors.

    `model_for(task)` returns the backbone state dict to score for `task` (a MergeResult may
    be passed directly). `evaluator` may be a Zoo (its ZooEvaluator is used). `individual` and
    `base` default to the evaluator's recorded scores when it has them (the zoo's manifest),
    otherwise those columns are NaN.
    """
    get_model = getattr(model_for, "model_for", model_for)
    if isinstance(evaluator, Zoo):
        evaluator = ZooEvaluator(evaluator)
    if tasks is None:
        tasks = list(getattr(evaluator, "tasks", []))
    if not tasks:
        raise EvaluationError("no tasks to evaluate; pass tasks=[...]")
    individual = individual if individual is not None else _recorded(evaluator, "individual")
    base = base if base is not None else _recorded(evaluator, "base")
    rows = []
    for index, task in enumerate(tasks):
        if progress is not None:
            progress(index / len(tasks), f"evaluating {task}")
        scores = evaluator.evaluate(task, get_model(task))
        rows += table_rows(task, scores, individual.get(task, {}), base.get(task, {}))
    if progress is not None:
        progress(1.0, "evaluation done")
    return pd.DataFrame(rows, columns=COLUMNS)


def table_rows(
    task: str,
    merged: Mapping[str, float],
    individual: Mapping[str, float],
    base: Mapping[str, float],
) -> list[dict[str, Any]]:
    """The table's rows of one task: one per metric, its three scores, n and standard errors."""
    rows = []
    n = merged.get(COUNT, math.nan)
    for metric in metric_names(merged):
        reference = individual.get(metric, math.nan)
        row = {
            "task": task,
            "metric": metric,
            "merged": merged[metric],
            "individual": reference,
            "base": base.get(metric, math.nan),
            "normalized": normalized(metric, merged[metric], reference),
            "n": n,
        }
        for column, scores in (("merged", merged), ("individual", individual), ("base", base)):
            row[f"{column}_stderr"] = stderr_of(metric, scores, n)
        rows.append(row)
    return rows


def _recorded(evaluator: Any, which: str) -> Scores:
    scores = getattr(evaluator, f"{which}_scores", None)
    return scores() if callable(scores) else {}


__all__ = [
    "COLUMNS",
    "KINDS",
    "CLIPEvaluator",
    "CausalLMEvaluator",
    "EvaluationError",
    "Evaluator",
    "HFSequenceClassificationEvaluator",
    "Scores",
    "StateDict",
    "ZooEvaluator",
    "binomial_stderr",
    "build_evaluator",
    "evaluate",
    "infer_kind",
    "score_tasks",
    "table_rows",
]

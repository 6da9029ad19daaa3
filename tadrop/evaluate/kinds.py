"""Which evaluator fits a family: the kind from a ``kind:`` setting or the base's config.json,
the evaluator built from the per-task data files, and the scores of the family's own models.

    evaluator = build_evaluator("causal_lm", base=..., data={"task": "task.jsonl"})
    score = scorer(evaluator, tasks)     # (state dict or model_for) -> {task: {metric, n, ...}}

``scorer`` is the plain callable sweeps and grids call for each merged model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tadrop.evaluate.scores import EvaluationError, Evaluator, StateDict, score_tasks

KINDS = ("causal_lm", "clip", "sequence_classification")
ScoreFunction = Callable[[Any], dict[str, dict[str, float]]]


def infer_kind(base: str | os.PathLike) -> str:
    """The evaluator kind of a Hugging Face folder, from its config.json's ``architectures``
    (``*ForCausalLM``/``*LMHeadModel``, ``CLIPModel``, ``*ForSequenceClassification``) or
    ``model_type``; EvaluationError naming the folder when it cannot tell."""
    folder = Path(base)
    config_file = (folder if folder.is_dir() else folder.parent) / "config.json"
    hint = f"set eval.kind to one of {', '.join(KINDS)}"
    if not config_file.is_file():
        raise EvaluationError(
            f"cannot tell which evaluator fits {folder}: it has no config.json; {hint}"
        )
    config = json.loads(config_file.read_text(encoding="utf-8"))
    architectures = [str(name) for name in config.get("architectures") or []]
    model_type = str(config.get("model_type", ""))
    for name in architectures:
        if name.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal_lm"
        if name == "CLIPModel":
            return "clip"
        if name.endswith("ForSequenceClassification"):
            return "sequence_classification"
    if model_type == "clip":
        return "clip"
    if not architectures and model_type:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            return "causal_lm"
    raise EvaluationError(
        f"cannot tell which evaluator fits {config_file} (architectures {architectures}, "
        f"model_type {model_type!r}); {hint}"
    )


def build_evaluator(
    kind: str,
    *,
    base: str | os.PathLike,
    data: Mapping[str, str | os.PathLike],
    models: Mapping[str, str | os.PathLike] | None = None,
    options: Mapping[str, Any] | None = None,
    device: str = "auto",
) -> Evaluator:
    """The evaluator of ``kind`` for the tasks in ``data``. ``models`` (task -> fine-tuned
    folder) is needed by sequence classifiers, whose heads stay per task; ``options`` are the
    kind's keyword arguments (metric, template, heads, batch_size...; None values dropped)."""
    chosen = {key: value for key, value in (options or {}).items() if value is not None}
    if kind == "causal_lm":
        from tadrop.evaluate.causal_lm import CausalLMEvaluator

        return CausalLMEvaluator(base, data, device=device, **chosen)
    if kind == "clip":
        from tadrop.evaluate.clip import CLIPEvaluator

        return CLIPEvaluator(base, data, device=device, **chosen)
    if kind == "sequence_classification":
        from tadrop.evaluate.sequence import HFSequenceClassificationEvaluator

        missing = sorted(set(data) - set(models or {}))
        if missing:
            raise EvaluationError(f"sequence classifiers need the fine-tuned folder of {missing}")
        folders = {task: (models or {})[task] for task in data}
        return HFSequenceClassificationEvaluator(folders, data, device=device, **chosen)
    raise EvaluationError(f"unknown evaluation kind {kind!r}; choose one of {', '.join(KINDS)}")


def scorer(evaluator: Evaluator, tasks: list[str]) -> ScoreFunction:
    """``score(model)``: {task: scores} of a state dict (the same for every task), or of a
    ``model_for(task)`` callable / MergeResult (EMR scores each task's own model)."""

    def score(model: Any) -> dict[str, dict[str, float]]:
        state_for = getattr(model, "model_for", model)
        if not callable(state_for):
            return score_tasks(evaluator, lambda task: model, tasks)
        return score_tasks(evaluator, state_for, tasks)

    return score


def reference_scores(
    evaluator: Evaluator,
    family: Any,
    tasks: list[str],
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """(individual, base): each task's fine-tuned model and the base, scored on the task."""
    from tadrop.task_vectors import base_state, finetuned_state

    def step(offset: int) -> Callable[[int, int, str], None] | None:
        if progress is None:
            return None
        return lambda done, total, text: progress(offset + done, 2 * total, text)

    individual = score_tasks(evaluator, lambda task: finetuned_state(family, task), tasks, step(0))
    base_model: StateDict = base_state(family)
    base = score_tasks(evaluator, lambda task: base_model, tasks, step(len(tasks)))
    return individual, base

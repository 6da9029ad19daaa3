"""What every evaluator returns, and the one home of the score formulas.

An evaluator's ``evaluate(task, state_dict)`` returns one flat dict per task: each metric's
value, ``<metric>_stderr`` beside it and ``n``, the number of examples (tokens for perplexity)
the scores were computed on, e.g. ``{"acc": 0.75, "acc_stderr": 0.0968, "n": 20}`` (the
naming lm-evaluation-harness uses in its result tables).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import torch

Scores = Mapping[str, Mapping[str, float]]  # task -> {metric: value, metric_stderr, n}
StateDict = Mapping[str, torch.Tensor]
STDERR_SUFFIX = "_stderr"
COUNT = "n"
PROPORTIONS = frozenset({"accuracy", "acc", "acc_norm", "exact_match"})  # binomial stderr
LOWER_IS_BETTER = frozenset({"perplexity"})


class EvaluationError(ValueError):
    """A state dict or a data file does not fit the evaluator; the message says what to fix."""


@runtime_checkable
class Evaluator(Protocol):
    def evaluate(self, task: str, state_dict: StateDict) -> dict[str, float]:
        """Metrics of the model ``state_dict`` on ``task`` (with the task's own head, if any)."""


def binomial_stderr(p: float, n: int) -> float:
    """Standard error of an accuracy p measured on n examples: sqrt(p (1 - p) / n)."""
    return math.sqrt(p * (1.0 - p) / n) if n > 0 else math.nan


def accuracy_scores(correct: torch.Tensor, name: str = "accuracy") -> dict[str, float]:
    """{name, name_stderr, n} of a boolean (or 0/1) tensor of per-example hits."""
    n = int(correct.numel())
    if n == 0:
        raise EvaluationError("no examples to score: the evaluation data is empty")
    p = float(correct.double().mean())
    return {name: p, f"{name}{STDERR_SUFFIX}": binomial_stderr(p, n), COUNT: n}


def perplexity_scores(token_nll: torch.Tensor) -> dict[str, float]:
    """exp(mean NLL) over the scored tokens, with its delta-method standard error
    perplexity * sd(NLL) / sqrt(n) (tokens taken as independent, so a lower bound)."""
    n = int(token_nll.numel())
    if n == 0:
        raise EvaluationError("no tokens to score: the text is empty or shorter than 2 tokens")
    nll = token_nll.double()
    perplexity = float(torch.exp(nll.mean()))
    spread = float(nll.std(unbiased=True)) if n > 1 else math.nan
    return {
        "perplexity": perplexity,
        f"perplexity{STDERR_SUFFIX}": perplexity * spread / math.sqrt(n),
        COUNT: n,
    }


def normalized(metric: str, merged: float, individual: float) -> float:
    """The merge's score relative to the fine-tuned model's, 1 = as good, < 1 = worse:
    merged / individual, or individual / merged for metrics where lower is better."""
    if metric in LOWER_IS_BETTER:
        merged, individual = individual, merged
    return merged / individual if individual else math.nan


def stderr_of(metric: str, scores: Mapping[str, float], n: float) -> float:
    """A score's standard error: as recorded, else the binomial one of a proportion on n
    examples (reference accuracies recorded without it, such as the demo zoo's manifest)."""
    recorded = scores.get(f"{metric}{STDERR_SUFFIX}")
    if recorded is not None:
        return recorded
    if metric in PROPORTIONS and metric in scores and n == n:
        return binomial_stderr(scores[metric], int(n))
    return math.nan


def metric_names(scores: Mapping[str, float]) -> list[str]:
    """The metrics of one task's scores (without ``n`` and the ``*_stderr`` entries)."""
    return [key for key in scores if key != COUNT and not key.endswith(STDERR_SUFFIX)]


def score_tasks(
    evaluator: Evaluator,
    state_for: Callable[[str], StateDict],
    tasks: list[str],
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, dict[str, float]]:
    """{task: scores} of ``evaluator`` on the state dict ``state_for(task)`` of each task."""
    results = {}
    for index, task in enumerate(tasks):
        if progress is not None:
            progress(index, len(tasks), f"evaluating {task}")
        results[task] = dict(evaluator.evaluate(task, state_for(task)))
    if progress is not None:
        progress(len(tasks), len(tasks), "evaluation done")
    return results

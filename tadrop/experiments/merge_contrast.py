"""Does merging matter on a zoo? The merge numbers recorded in its manifest and docs/zoo.md.

Each method merges every task of the zoo with its published defaults and is scored the way
the paper scores merges (the merged backbone with each task's fine-tuned head). Task
arithmetic is taken at lambda = 1 (the plain sum of task vectors), where interference shows.
"""

from __future__ import annotations

from typing import Any

from tadrop.zoo.load import Zoo

# (label, method, sparsifier, method parameters)
MERGES = (
    ("task_arithmetic_1.0", "task_arithmetic", None, {"scaling": 1.0}),
    ("task_arithmetic_0.3", "task_arithmetic", None, {"scaling": 0.3}),
    ("ties", "ties", None, {"scaling": 1.0}),
    ("emr", "emr", None, {}),
    ("emr+tadrop", "emr", "tadrop", {}),
)


def merge_contrast(zoo: Zoo) -> dict[str, Any]:
    """Mean accuracy over the zoo's tasks of base, individual and each of MERGES."""
    from tadrop.evaluate import evaluate
    from tadrop.merge import run_merge
    from tadrop.registry import build_merge
    from tadrop.task_vectors import load_family

    family = load_family(zoo.base_dir, zoo.task_dirs)
    base = zoo.base_scores()
    individual = zoo.individual_scores()
    means = {
        "base": _mean(base[t]["accuracy"] for t in zoo.tasks),
        "individual": _mean(individual[t]["accuracy"] for t in zoo.tasks),
    }
    for label, method_name, sparsifier_name, params in MERGES:
        method, sparsifier = build_merge(method_name, sparsifier_name, params)
        result = run_merge(family, method, sparsifier, device="cpu")
        means[label] = _mean(evaluate(result.model_for, zoo)["merged"])
    return {
        "mean_accuracy": {name: round(value, 4) for name, value in means.items()},
        "individual_minus_base": round(means["individual"] - means["base"], 4),
        "individual_minus_task_arithmetic_1.0": round(
            means["individual"] - means["task_arithmetic_1.0"], 4
        ),
    }


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values)

"""``tadrop eval CONFIG``: merge what the config describes (each sweep point) and evaluate it.

Demo zoo configs are scored on the zoo's held-out sets (``ZooEvaluator``; individual and base
accuracies come from the zoo's manifest). Configs of your own models need ``eval.data``
(task -> CSV/JSON-lines file with ``text`` and ``label`` columns) and fine-tuned folders that
``transformers`` can load as sequence classifiers; individual and base accuracies are then
measured here. The table is printed and saved as CSV.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from tadrop.cli.merge import merge_points, open_family
from tadrop.cli.output import Console, UsageError, checking_inputs, format_table
from tadrop.config import RunConfig


def csv_path(config: RunConfig, override: str | None) -> Path:
    """-o, else eval.csv, else OUT.eval.csv beside output.path, else ./<config stem>.eval.csv."""
    if override:
        return Path(override).expanduser().absolute()
    if config.eval is not None and config.eval.csv is not None:
        return config.eval.csv
    if config.output.path is not None:
        return config.output.path.with_name(config.output.path.name + ".eval.csv")
    return Path.cwd() / f"{config.label}.eval.csv"


def make_evaluator(config: RunConfig, family):
    """(evaluator, individual scores or None, base scores or None) for the config's family."""
    from tadrop.evaluate import HFSequenceClassificationEvaluator, ZooEvaluator
    from tadrop.experiments import base_state, finetuned_state

    settings = config.eval
    if config.demo is not None and (settings is None or settings.data is None):
        from tadrop.zoo import load_zoo

        evaluator = ZooEvaluator(load_zoo(config.demo.zoo, config.demo.size))
        individual = None if settings is None or settings.individual else {}
        base = None if settings is None or settings.base else {}
        return evaluator, individual, base
    if settings is None or not settings.data:
        raise UsageError(
            "Nothing to evaluate on: add eval.data (task: labelled CSV file) to the config, or use a demo: block."
        )
    unknown = sorted(set(settings.data) - set(family.task_names))
    if unknown:
        raise UsageError(
            f"eval.data names unknown task(s) {unknown}; the tasks are {family.task_names}."
        )
    models = {task: family.tasks[task].source for task in settings.data}
    evaluator = HFSequenceClassificationEvaluator(models, settings.data)

    def scores(state_for) -> dict[str, dict[str, float]]:
        return {task: evaluator.evaluate(task, state_for(task)) for task in settings.data}

    individual = scores(lambda task: finetuned_state(family, task)) if settings.individual else {}
    base = scores(lambda task: base_state(family)) if settings.base else {}
    return evaluator, individual, base


def command_eval(args, console: Console) -> dict[str, Any]:
    from tadrop.config import load_config
    from tadrop.evaluate import evaluate
    from tadrop.io import atomic_write_text

    with checking_inputs():
        config = load_config(args.config)
        if config.template:
            raise UsageError(
                f"{args.config} is a template: replace its placeholder paths and remove `template: true`."
            )
        output = csv_path(config, args.output)
        if output.exists() and not args.overwrite:
            raise UsageError(f"{output} already exists; pass --overwrite to replace it.")
        family = open_family(config, console)
        evaluator, individual, base = make_evaluator(config, family)
        tasks = (config.eval.tasks if config.eval else None) or [
            t for t in family.task_names if t in getattr(evaluator, "tasks", family.task_names)
        ]
        unknown = sorted(set(tasks) - set(family.task_names))
        if unknown:
            raise UsageError(
                f"eval.tasks names unknown task(s) {unknown}; the tasks are {family.task_names}."
            )
    tables = []
    for label, result, seconds in merge_points(
        config, family, console, device=args.device or config.device
    ):
        console.info(
            f"merged {label or config.method} in {seconds:.1f} s; evaluating {len(tasks)} task(s)..."
        )
        table = evaluate(result.model_for, evaluator, tasks, individual=individual, base=base)
        sparsity = result.sparsity()
        table.insert(0, "point", label or config.label)
        table["sparsity"] = [sparsity.get(task, math.nan) for task in table["task"]]
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    atomic_write_text(output, table.to_csv(index=False))
    averages = table.groupby("point", sort=False)[["merged", "normalized"]].mean().reset_index()
    text = (
        format_table(table.to_dict("records"), list(table.columns))
        + "\n\naverage:\n"
        + format_table(averages.to_dict("records"), list(averages.columns))
        + f"\n\nsaved {output}"
    )
    console.result(
        {
            "csv": str(output),
            "rows": table.to_dict("records"),
            "average": averages.to_dict("records"),
        },
        text,
    )
    return {"csv": str(output)}

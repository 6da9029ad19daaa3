"""``tadrop eval CONFIG``: merge what the config describes (each sweep point) and evaluate it.

Demo zoo configs are scored on the zoo's held-out sets (``ZooEvaluator``; individual and base
accuracies come from the zoo's manifest). Configs of your own models need ``eval.data``
(task -> data file or image folder) and an evaluator kind (``eval.kind``: causal_lm, clip,
sequence_classification; else read from the base's config.json); individual and base scores
are then measured here with the same evaluator (``tadrop.evaluate``). The table, with the
sample count n and each score's standard error, is printed and saved as CSV.
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


def make_evaluator(config: RunConfig, family, device: str = "auto"):
    """(evaluator, individual scores or None, base scores or None) for the config's family."""
    from tadrop.evaluate import ZooEvaluator

    settings = config.eval
    if config.demo is not None and (settings is None or settings.data is None):
        from tadrop.zoo import load_zoo

        evaluator = ZooEvaluator(load_zoo(config.demo.zoo, config.demo.size))
        individual = None if settings is None or settings.individual else {}
        base = None if settings is None or settings.base else {}
        return evaluator, individual, base
    if settings is None or not (settings.data or settings.lm_eval_tasks):
        raise UsageError(
            "Nothing to evaluate on: add eval.data (task: data file or image folder) to the "
            "config, or use a demo: block."
        )
    evaluator = own_evaluator(config, family, device)
    tasks = [task for task in settings.tasks or family.task_names if task in evaluator.tasks]
    individual, base = {}, {}
    if settings.individual or settings.base:
        from tadrop.evaluate.kinds import reference_scores

        individual, base = reference_scores(evaluator, family, tasks)
    return evaluator, individual if settings.individual else {}, base if settings.base else {}


def own_evaluator(config: RunConfig, family, device: str):
    """The evaluator of eval.kind (else inferred from the base's config.json) on eval.data."""
    from tadrop.evaluate import build_evaluator, infer_kind

    settings = config.eval
    data = dict(settings.data or {})
    unknown = sorted((set(data) | set(settings.lm_eval_tasks or {})) - set(family.task_names))
    if unknown:
        raise UsageError(
            f"eval.data names unknown task(s) {unknown}; the tasks are {family.task_names}."
        )
    if settings.lm_eval_tasks:
        from tadrop.evaluate.harness import HarnessEvaluator

        return HarnessEvaluator(
            config.base,
            settings.lm_eval_tasks,
            include_path=settings.lm_eval_include,
            device=device,
            batch_size=settings.batch_size or 8,
        )
    kind = settings.kind or infer_kind(config.base)
    options = {"batch_size": settings.batch_size, "tokenizer": settings.tokenizer}
    if kind == "causal_lm":
        options |= {"metric": settings.metric, "max_new_tokens": settings.max_new_tokens}
        options["add_bos"] = settings.add_bos
    elif kind == "clip":
        options |= {"template": settings.template, "heads": settings.heads}
    else:
        options.pop("tokenizer")
    models = {task: family.tasks[task].source for task in data}
    return build_evaluator(
        kind, base=config.base, data=data, models=models, options=options, device=device
    )


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
        device = args.device or config.device
        evaluator, individual, base = make_evaluator(config, family, device)
        tasks = (config.eval.tasks if config.eval else None) or [
            t for t in family.task_names if t in getattr(evaluator, "tasks", family.task_names)
        ]
        unknown = sorted(set(tasks) - set(family.task_names))
        if unknown:
            raise UsageError(
                f"eval.tasks names unknown task(s) {unknown}; the tasks are {family.task_names}."
            )
    tables = []
    for label, result, seconds in merge_points(config, family, console, device=device):
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

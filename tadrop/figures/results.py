"""Merge results: per-task bars, score against sparsity, and TADrop's (a, b) sensitivity.

The accuracy charts zoom to the data (``zoomed_range``), draw the individual and base models as
reference marks per task and dashed lines at their means, add a "mean" group over tasks, and
carry one standard error per bar (``score_errors``: the evaluation table's, binomial
sqrt(p (1 - p) / n) for accuracies) with the sample count n under each task's name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from tadrop.evaluate.scores import PROPORTIONS, stderr_of
from tadrop.figures.base import RESULT_COLUMNS, empty_figure

REFERENCES = ("individual", "base")  # drawn as marks, not bars
RUN_COLOURS = (
    RESULT_COLUMNS["merged"],
    "#54a24b",
    "#b279a2",
    "#e45756",
    "#72b7b2",
    "#9d755d",
    "#ff9da6",
)
MEAN_GROUP = "mean"
NO_SPARSIFIER = "none"  # the sweep's series of the merge without a sparsifier (registry name)


def zoomed_range(
    values: Iterable[float], *, margin: float = 0.1, bounds: tuple[float, float] | None = None
) -> tuple[float, float]:
    """[lowest - margin * span, highest + margin * span] of the finite values (span = highest -
    lowest; 0.05 * max(|value|, 1) each side when all are equal), clipped to ``bounds``."""
    finite = [float(value) for value in values if value is not None and math.isfinite(value)]
    if not finite:
        return bounds or (0.0, 1.0)
    low, high = min(finite), max(finite)
    pad = margin * (high - low) if high > low else 0.05 * max(abs(high), 1.0)
    low, high = low - pad, high + pad
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return low, high


def score_errors(results: pd.DataFrame, value: str = "merged") -> pd.Series:
    """One standard error per row of an evaluation table for the ``value`` shown: ``merged``
    takes ``merged_stderr`` (else the binomial one of a proportion on ``n`` examples,
    ``tadrop.evaluate.scores.stderr_of``); ``normalized`` = merged / individual takes
    merged_stderr / individual (the individual score held fixed)."""
    errors = []
    for row in results.itertuples(index=False):
        recorded = getattr(row, "merged_stderr", math.nan)
        if recorded is None or not math.isfinite(recorded):
            scores = {row.metric: row.merged}
            recorded = stderr_of(row.metric, scores, getattr(row, "n", math.nan))
        if value == "normalized":
            individual = getattr(row, "individual", math.nan)
            recorded = recorded / individual if individual else math.nan
        errors.append(recorded)
    return pd.Series(errors, index=results.index, dtype=np.float64, name=f"{value}_stderr")


def error_bar_note(metrics: Iterable[str], value: str = "merged") -> str:
    """What the error bars are, for a chart's subtitle or a page's caption (one wording)."""
    proportions = all(metric in PROPORTIONS for metric in metrics)
    what = "binomial √(p(1−p)/n) on n examples" if proportions else "as evaluated"
    if value == "normalized":
        what += ", divided by the individual score"
    return f"error bars: ±1 standard error ({what}; mean: √(Σ se²)/tasks)"


def mean_group(results: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per run and metric, the mean over tasks of ``value`` and the references, with the
    standard error of a mean of independent tasks, √(Σ se²) / tasks, and n summed."""
    rows = []
    for (run, metric), group in results.groupby(["run", "metric"], sort=False):
        errors = group["stderr"]
        rows.append(
            {
                "run": run,
                "metric": metric,
                "task": MEAN_GROUP,
                "score": group["score"].mean(),
                "stderr": math.sqrt(float((errors**2).sum())) / len(group),
                "n": group["n"].sum(min_count=1),
                **{ref: group[ref].mean() for ref in REFERENCES},
            }
        )
    return pd.DataFrame(rows)


def _plotted(results: pd.DataFrame, value: str) -> pd.DataFrame:
    """The rows drawn: score, stderr, references (normalized by individual for "normalized"),
    n, and the category label with n under the task's name; the mean group appended."""
    frame = results.copy()
    for column in ("n", *REFERENCES):
        if column not in frame:
            frame[column] = math.nan
    frame["score"] = frame[value]
    frame["stderr"] = score_errors(frame, value)
    if value == "normalized":
        individual = frame["individual"].where(frame["individual"] != 0)
        frame["base"], frame["individual"] = frame["base"] / individual, 1.0
    frame = pd.concat([frame, mean_group(frame, value)], ignore_index=True)
    several = frame["metric"].nunique() > 1
    frame["category"] = [
        _category(task, metric if several else "", n)
        for task, metric, n in zip(frame["task"], frame["metric"], frame["n"], strict=True)
    ]
    return frame


def _category(task: str, metric: str, n: float) -> str:
    name = f"{task} · {metric}" if metric else task
    count = f"n = {int(n)}" if n == n else "n unknown"
    return f"{name}<br>{'Σ' if task == MEAN_GROUP else ''}{count}"


def results_bars(results: pd.DataFrame, *, value: str = "merged") -> go.Figure:
    """Per-task bars of one or more runs (a ``run`` column), zoomed to the data.

    ``results``: rows of ``tadrop.evaluate`` tables. Bars: each run's ``value`` with ±1 standard
    error; marks: the individual and base models of the first run per task, dashed lines at
    their means; a "mean" group over tasks.
    """
    if results.empty:
        return empty_figure("No results yet: run a merge.")
    frame = _plotted(results, value)
    metrics = list(dict.fromkeys(frame["metric"]))
    figure = go.Figure()
    for index, (run, rows) in enumerate(frame.groupby("run", sort=False)):
        figure.add_trace(_run_bars(run, rows, RUN_COLOURS[index % len(RUN_COLOURS)]))
    first_run = frame[frame["run"] == frame["run"].iloc[0]]
    extents = [*(frame["score"] - frame["stderr"].fillna(0)), *(frame["score"] + frame["stderr"])]
    for reference in REFERENCES:
        marks = first_run[first_run[reference].notna()]
        if marks.empty:
            continue
        figure.add_trace(_reference_marks(reference, marks))
        mean = float(marks.loc[marks["task"] == MEAN_GROUP, reference].iloc[0])
        figure.add_hline(
            y=mean,
            line={"color": RESULT_COLUMNS[reference], "dash": "dash", "width": 1},
            annotation_text=f"{reference} mean {mean:.3f}",
            annotation_position="top right",
        )
        extents += list(marks[reference])
    proportions = value == "merged" and all(metric in PROPORTIONS for metric in metrics)
    low, high = zoomed_range(extents, bounds=(0.0, 1.0) if proportions else None)
    label = f"{value} {', '.join(metrics)}" if value == "normalized" else ", ".join(metrics)
    figure.update_yaxes(range=[low, high], title=f"{label} (axis zoomed, not from 0)")
    figure.update_xaxes(type="category", title="")
    figure.update_layout(
        barmode="group",
        legend_title_text="",
        title=f"Per-task results ({value})<br><sup>{error_bar_note(metrics, value)}<br>marks "
        "and dashed lines: individual and base models</sup>",
        margin={"t": 110},
    )
    return figure


def _run_bars(run: str, rows: pd.DataFrame, colour: str) -> go.Bar:
    return go.Bar(
        name=str(run),
        x=rows["category"],
        y=rows["score"],
        marker_color=colour,
        error_y={"type": "data", "array": rows["stderr"].to_numpy(), "visible": True},
        customdata=np.stack([rows["stderr"], rows["n"]], axis=-1),
        hovertemplate=f"{run}<br>%{{x}}<br>%{{y:.4f}} ± %{{customdata[0]:.4f}} "
        "(1 standard error)<extra></extra>",
    )


def _reference_marks(reference: str, marks: pd.DataFrame) -> go.Scatter:
    return go.Scatter(
        name=reference,
        x=marks["category"],
        y=marks[reference],
        mode="markers",
        marker={
            "symbol": "line-ew",
            "size": 36,
            "line": {"width": 3, "color": RESULT_COLUMNS[reference]},
        },
        hovertemplate=f"{reference} model<br>%{{x}}<br>%{{y:.4f}}<extra></extra>",
    )


def sparsity_sweep(
    sweep: pd.DataFrame,
    *,
    score_label: str = "mean normalized score",
    title: str = "Merged score against sparsity",
) -> go.Figure:
    """Score against overall sparsity, one line per sparsifier (columns sparsifier, sparsity,
    score). Rows of sparsifier "none" (the merge without one) are a dashed reference line."""
    if sweep.empty:
        return empty_figure("No sweep yet.")
    baseline = sweep[sweep["sparsifier"] == NO_SPARSIFIER]
    curves = sweep[sweep["sparsifier"] != NO_SPARSIFIER].sort_values(["sparsifier", "sparsity"])
    hover = [column for column in ("target", "a", "b") if column in sweep]
    figure = px.line(
        curves,
        x="sparsity",
        y="score",
        color="sparsifier",
        markers=True,
        hover_data=hover,
        labels={"sparsity": "overall sparsity (reached)", "score": score_label},
        title=title,
    )
    for row in baseline.itertuples(index=False):
        figure.add_hline(
            y=row.score,
            line={"color": RESULT_COLUMNS["base"], "dash": "dash"},
            annotation_text=f"no sparsifier {row.score:.3f}",
            annotation_position="bottom right",
        )
        figure.add_trace(
            go.Scatter(
                x=[row.sparsity],
                y=[row.score],
                mode="markers",
                name="no sparsifier",
                marker={"color": RESULT_COLUMNS["base"], "size": 10, "symbol": "diamond"},
            )
        )
    figure.update_xaxes(range=[-0.02, 1.02])
    figure.update_yaxes(range=list(zoomed_range(sweep["score"])))
    return figure


def sensitivity_heatmap(grid: pd.DataFrame) -> go.Figure:
    """Score over the (a, b) grid of TADrop's quantiles (columns a, b, score)."""
    if grid.empty:
        return empty_figure("No sensitivity grid yet.")
    table = grid.pivot_table(index="a", columns="b", values="score", aggfunc="mean")
    figure = px.imshow(
        table,
        text_auto=".3f",
        aspect="auto",
        color_continuous_scale="Viridis",
        labels={"x": "b (upper quantile)", "y": "a (lower quantile)", "color": "score"},
        title="Sensitivity of the merged score to TADrop's quantiles",
    )
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category")
    return figure

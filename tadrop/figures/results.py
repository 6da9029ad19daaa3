"""Merge results: per-task bars, score against sparsity, and TADrop's (a, b) sensitivity."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from tadrop.figures.base import RESULT_COLUMNS, empty_figure


def results_bars(results: pd.DataFrame, *, value: str = "merged") -> go.Figure:
    """Grouped bars per task for one or more runs.

    ``results``: rows of ``tadrop.evaluate`` tables with a ``run`` column naming each run.
    Bars: the chosen ``value`` of each run, plus the individual and base models of the first.
    """
    if results.empty:
        return empty_figure("No results yet: run a merge.")
    bars = [
        results.assign(series=results["run"], score=results[value]),
    ]
    first_run = results[results["run"] == results["run"].iloc[0]]
    for reference in ("individual", "base"):
        if value != "normalized" and reference in first_run and first_run[reference].notna().any():
            bars.insert(0, first_run.assign(series=reference, score=first_run[reference]))
    long = pd.concat(bars, ignore_index=True)
    metric = results["metric"].iloc[0] if "metric" in results else "score"
    figure = px.bar(
        long,
        x="task",
        y="score",
        color="series",
        barmode="group",
        hover_data=["series", "metric"] if "metric" in long else ["series"],
        labels={"score": f"{value} {metric}" if value == "normalized" else metric},
        color_discrete_map=RESULT_COLUMNS,
        title=f"Per-task results ({value})",
    )
    figure.update_layout(legend_title_text="")
    return figure


def sparsity_sweep(
    sweep: pd.DataFrame,
    *,
    score_label: str = "mean normalized score",
    title: str = "Merged score against sparsity",
) -> go.Figure:
    """Accuracy against sparsity, one line per sparsifier (columns sparsifier, sparsity, score)."""
    if sweep.empty:
        return empty_figure("No sweep yet.")
    figure = px.line(
        sweep.sort_values("sparsity"),
        x="sparsity",
        y="score",
        color="sparsifier",
        markers=True,
        labels={"sparsity": "overall sparsity", "score": score_label},
        title=title,
    )
    figure.update_xaxes(range=[0, 1])
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

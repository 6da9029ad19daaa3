"""Heterogeneity figures of a statistics table (columns of ``tadrop.stats.compute_stats``:
``task, tensor, layer, kind, ...``) and the |tau| histogram of one tensor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from tadrop.figures.base import (
    FRACTION_STATISTICS,
    empty_figure,
    heatmap,
    statistic_label,
    with_layers,
)
from tadrop.names import component_group


def statistic_heatmap(
    stats: pd.DataFrame, statistic: str, *, unit_scale: bool = False
) -> go.Figure:
    """Task x layer heatmap of one statistic: each cell is the median over the layer's tensors.

    Colours fit the data (``color_range``); ``unit_scale`` fixes them at 0-1, and is refused
    for a statistic that is not a fraction (``FRACTION_STATISTICS``)."""
    if unit_scale and statistic not in FRACTION_STATISTICS:
        raise ValueError(
            f"A 0-1 colour scale fits only fractions ({', '.join(sorted(FRACTION_STATISTICS))}), "
            f"not {statistic!r}: leave unit_scale off for it."
        )
    layered = with_layers(stats)
    if layered.empty:
        return empty_figure("No tensor with a layer index in this selection.")
    grid = layered.pivot_table(index="task", columns="layer", values=statistic, aggfunc="median")
    label = statistic_label(statistic)
    return heatmap(
        grid,
        colorscale="Viridis",
        x_title="layer",
        value_label=label,
        title=f"{label} per task and layer (median over the layer's tensors)",
        unit_scale=unit_scale,
    )


def group_distribution_by_layer(stats: pd.DataFrame, statistic: str) -> go.Figure:
    """Attention vs MLP: distribution of a statistic over tensors and tasks, per layer."""
    layered = with_layers(stats)
    if "group" not in layered:
        layered["group"] = layered["kind"].map(component_group)
    layered = layered[layered["group"].isin(["attention", "mlp"])]
    if layered.empty:
        return empty_figure("No attention or MLP tensor with a layer index in this selection.")
    label = statistic_label(statistic)
    figure = px.box(
        layered.sort_values("layer"),
        x="layer",
        y=statistic,
        color="group",
        points="outliers",
        hover_data=["task", "tensor"],
        labels={statistic: label},
        title=f"Attention vs MLP: {label} per layer",
    )
    figure.update_xaxes(type="category")
    figure.update_layout(boxmode="group")
    return figure


def kinds_in_layer(stats: pd.DataFrame, layer: int, statistic: str) -> go.Figure:
    """Module types compared within one layer: one box per kind, one point per task x tensor."""
    in_layer = with_layers(stats)
    in_layer = in_layer[in_layer["layer"] == int(layer)]
    if in_layer.empty:
        return empty_figure(f"Layer {layer} has no tensor in this selection.")
    label = statistic_label(statistic)
    figure = px.box(
        in_layer,
        x="kind",
        y=statistic,
        points="all",
        color="kind",
        hover_data=["task", "tensor"],
        labels={statistic: label},
        title=f"Layer {layer}: {label} by module type",
    )
    figure.update_layout(showlegend=False)
    return figure


def up_vs_down(stats: pd.DataFrame, statistic: str) -> go.Figure:
    """Up vs down projection of the MLP: the statistic per layer, one line per task and kind."""
    projections = with_layers(stats)
    projections = projections[projections["kind"].isin(["mlp.up", "mlp.down"])]
    if projections.empty:
        return empty_figure("This model has no MLP up/down projection with a layer index.")
    per_layer = (
        projections.groupby(["task", "kind", "layer"], as_index=False)[statistic]
        .median()
        .sort_values("layer")
    )
    label = statistic_label(statistic)
    figure = px.line(
        per_layer,
        x="layer",
        y=statistic,
        color="kind",
        line_dash="task",
        markers=True,
        labels={statistic: label},
        title=f"MLP up vs down projection: {label} per layer",
    )
    return figure


def magnitude_histogram(
    histogram: pd.DataFrame,
    *,
    q_a: float,
    q_b: float,
    threshold: float,
    a: float,
    b: float,
    log_x: bool = False,
    log_y: bool = False,
) -> go.Figure:
    """Histogram of |τ| of one tensor (``left, right, count`` bins) with Q_a, Q_b and the drop
    threshold marked.

    Drawn as a filled step line, which reads the same on linear and log axes. On a log |τ| axis
    a first bin starting at 0 is drawn starting one bin-width (in log space) below its right edge.
    """
    if histogram.empty or int(histogram["count"].sum()) == 0:
        return empty_figure("No entries to draw.")
    lefts = histogram["left"].to_numpy(dtype=np.float64).copy()
    rights = histogram["right"].to_numpy(dtype=np.float64)
    counts = histogram["count"].to_numpy()
    if log_x and lefts[0] <= 0:
        ratio = rights[1] / rights[0] if len(rights) > 1 and rights[0] > 0 else 10.0
        lefts[0] = rights[0] / ratio
    figure = go.Figure(
        go.Scatter(
            x=np.append(lefts, rights[-1]),
            y=np.append(counts, counts[-1]),
            mode="lines",
            line_shape="hv",
            fill="tozeroy",
            line_color="#4c78a8",
            name="|τ|",
            hovertemplate="|τ| from %{x:.3g}<br>entries: %{y}<extra></extra>",
        )
    )
    markers = (
        (q_a, f"Q_{a:g}", "#54a24b", "dash"),
        (q_b, f"Q_{b:g}", "#e45756", "dash"),
        (threshold, "drop threshold", "#000000", "solid"),
    )
    for value, name, colour, dash in markers:
        if log_x and value <= 0:
            continue
        figure.add_vline(x=value, line_color=colour, line_dash=dash)
        figure.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                name=f"{name} = {value:.3g}",
                line={"color": colour, "dash": dash},
            )
        )
    figure.update_xaxes(title="|τ|", type="log" if log_x else "linear")
    figure.update_yaxes(title="entries", type="log" if log_y else "linear")
    figure.update_layout(title="Distribution of |τ|")
    return figure

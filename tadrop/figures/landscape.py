"""The sparsity landscape: TADrop's drop rate over tasks, tensors, layers and components.

A drop-rate table is any frame with ``task, tensor, layer, kind, numel, drop_rate`` (the
statistics table has them). Paper Fig. 5 is ``drop_rate_heatmap``, Fig. 6 ``drop_rate_by_layer``,
Fig. 7 ``drop_rate_by_component``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from tadrop.figures.base import DROP_RATE_SCALE, empty_figure, heatmap, tensor_order, with_layers


def weighted_drop_rate(rates: pd.DataFrame, by: list[str]) -> pd.Series:
    """numel-weighted mean drop rate per group (the fraction of the group's entries dropped)."""
    weighted = (rates["drop_rate"] * rates["numel"]).groupby([rates[key] for key in by]).sum()
    return weighted / rates.groupby(by)["numel"].sum()


def drop_rate_heatmap(
    rates: pd.DataFrame, title: str = "TADrop drop rate per task and tensor"
) -> go.Figure:
    """TADrop drop rate over task x tensor, tensors in model order (paper Fig. 5)."""
    if rates.empty:
        return empty_figure("No tensor to show.")
    grid = rates.pivot_table(index="task", columns="tensor", values="drop_rate", aggfunc="first")
    grid = grid[tensor_order(rates)]
    figure = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=list(grid.columns),
            y=list(grid.index),
            zmin=0.0,
            zmax=1.0,
            colorscale=DROP_RATE_SCALE,
            colorbar={"title": "drop rate"},
            hovertemplate="task %{y}<br>%{x}<br>drop rate %{z:.3f}<extra></extra>",
        )
    )
    figure.update_xaxes(showticklabels=len(grid.columns) <= 40, title="tensor (model order)")
    figure.update_layout(title=title)
    return figure


def drop_rate_by_kind_layer(rates: pd.DataFrame) -> go.Figure:
    """Mean drop rate by component kind x layer, over tasks and tensors."""
    layered = with_layers(rates)
    if layered.empty:
        return empty_figure("No tensor with a layer index to show.")
    grid = layered.pivot_table(index="kind", columns="layer", values="drop_rate", aggfunc="mean")
    return heatmap(
        grid,
        colorscale=DROP_RATE_SCALE,
        x_title="layer",
        value_label="drop rate",
        title="Mean drop rate by component and layer",
        zmin=0.0,
        zmax=1.0,
    )


def uniform_rate_contrast(rates: pd.DataFrame, uniform_rates: Mapping[str, float]) -> go.Figure:
    """Per-tensor TADrop rates against each task's uniform rate of the same overall sparsity.

    ``uniform_rates``: task -> the one rate that, applied to every tensor, drops as many entries
    as TADrop does over the whole task vector (TADrop's ``scope="global"`` ablation).
    """
    if rates.empty:
        return empty_figure("No tensor to show.")
    order = {name: position for position, name in enumerate(tensor_order(rates))}
    ordered = rates.assign(position=rates["tensor"].map(order)).sort_values("position")
    figure = go.Figure()
    palette = px.colors.qualitative.Plotly
    for index, (task, rows) in enumerate(ordered.groupby("task", sort=False)):
        colour = palette[index % len(palette)]
        figure.add_trace(
            go.Scatter(
                x=rows["position"],
                y=rows["drop_rate"],
                mode="lines+markers",
                marker_size=4,
                line_color=colour,
                name=f"{task}: TADrop",
                customdata=rows[["tensor"]].to_numpy(),
                hovertemplate="%{customdata[0]}<br>drop rate %{y:.3f}<extra></extra>",
            )
        )
        if task in uniform_rates:
            figure.add_trace(
                go.Scatter(
                    x=[0, len(order) - 1],
                    y=[uniform_rates[task]] * 2,
                    mode="lines",
                    line={"color": colour, "dash": "dash"},
                    name=f"{task}: uniform {uniform_rates[task]:.3f}",
                )
            )
    figure.update_xaxes(title="tensor (model order)")
    figure.update_yaxes(title="drop rate", range=[0, 1])
    figure.update_layout(title="TADrop per tensor vs one uniform rate per task (dashed)")
    return figure


def drop_rate_by_layer(rates: pd.DataFrame, title: str = "Drop rate per layer") -> go.Figure:
    """numel-weighted mean drop rate per layer, one line per task (paper Fig. 6)."""
    layered = with_layers(rates)
    if layered.empty:
        return empty_figure("No tensor with a layer index to show.")
    means = weighted_drop_rate(layered, ["task", "layer"]).rename("drop_rate").reset_index()
    figure = px.line(
        means,
        x="layer",
        y="drop_rate",
        color="task",
        markers=True,
        labels={"layer": "layer (block index)", "drop_rate": "mean drop rate d"},
        title=title,
    )
    figure.update_yaxes(rangemode="tozero")
    return figure


def drop_rate_by_component(
    rates: pd.DataFrame, title: str = "Drop rate per component"
) -> go.Figure:
    """numel-weighted mean drop rate per component kind, one bar per task (paper Fig. 7)."""
    if rates.empty:
        return empty_figure("No tensor to show.")
    means = weighted_drop_rate(rates, ["kind", "task"]).rename("drop_rate").reset_index()
    figure = px.bar(
        means,
        x="kind",
        y="drop_rate",
        color="task",
        barmode="group",
        category_orders={"kind": list(pd.unique(rates["kind"]))},
        labels={"kind": "component", "drop_rate": "mean drop rate d"},
        title=title,
    )
    return figure

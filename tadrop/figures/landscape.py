"""The sparsity landscape: TADrop's drop rate over tasks, tensors, layers and components.

A drop-rate table is any frame with ``task, tensor, layer, kind, numel, drop_rate`` (the
statistics table has them). Paper Fig. 5 is ``drop_rate_heatmap``; Fig. 6, one task's drop rate
by component kind with its layers as points, is ``component_drop_rates``, and Fig. 7, the same
for every task in panels on shared axes, ``component_drop_rates_by_task``. ``drop_rate_by_layer``
and ``drop_rate_by_component`` draw all tasks in one chart (the reproduction report's figures).
Heatmap colours fit the data (``tadrop.figures.base.color_range``); ``unit_scale=True`` fixes
colours or the rate axis at 0-1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from tadrop.figures.base import (
    DROP_RATE_SCALE,
    add_to_panels,
    empty_figure,
    heatmap,
    rate_axis_range,
    small_multiples,
    tensor_order,
    with_layers,
)

COMPONENT_BAR_COLOUR = "#f58518"


def weighted_drop_rate(rates: pd.DataFrame, by: list[str]) -> pd.Series:
    """numel-weighted mean drop rate per group (the fraction of the group's entries dropped)."""
    weighted = (rates["drop_rate"] * rates["numel"]).groupby([rates[key] for key in by]).sum()
    return weighted / rates.groupby(by)["numel"].sum()


def drop_rate_heatmap(
    rates: pd.DataFrame,
    title: str = "TADrop drop rate per task and tensor",
    *,
    unit_scale: bool = False,
) -> go.Figure:
    """TADrop drop rate over task x tensor, tensors in model order (paper Fig. 5); colours fit
    the data (``color_range``) unless ``unit_scale``."""
    if rates.empty:
        return empty_figure("No tensor to show.")
    grid = rates.pivot_table(index="task", columns="tensor", values="drop_rate", aggfunc="first")
    grid = grid[tensor_order(rates)]
    figure = heatmap(
        grid,
        colorscale=DROP_RATE_SCALE,
        x_title="tensor (model order)",
        value_label="drop rate",
        title=title,
        unit_scale=unit_scale,
    )
    figure.update_traces(hovertemplate="task %{y}<br>%{x}<br>drop rate %{z:.3f}<extra></extra>")
    figure.update_xaxes(showticklabels=len(grid.columns) <= 40)
    return figure


def drop_rate_by_kind_layer(rates: pd.DataFrame, *, unit_scale: bool = False) -> go.Figure:
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
        unit_scale=unit_scale,
    )


def uniform_rate_contrast(
    rates: pd.DataFrame,
    uniform_rates: Mapping[str, float],
    *,
    tasks: Sequence[str] | None = None,
    unit_scale: bool = False,
) -> go.Figure:
    """Per-tensor TADrop rates against each task's uniform rate of the same overall sparsity,
    one panel per task (``tasks``: those shown, default all), axes shared.

    ``uniform_rates``: task -> the one rate that, applied to every tensor, drops as many entries
    as TADrop does over the whole task vector (TADrop's ``scope="global"`` ablation).
    """
    if rates.empty:
        return empty_figure("No tensor to show.")
    shown = list(pd.unique(rates["task"])) if tasks is None else list(tasks)
    unknown = [task for task in shown if task not in set(rates["task"])]
    if unknown or not shown:
        return empty_figure(f"No drop rates for the task(s) {', '.join(unknown) or '(none)'}.")
    order = {name: position for position, name in enumerate(tensor_order(rates))}
    ordered = rates.assign(position=rates["tensor"].map(order)).sort_values("position")
    columns = 1 if len(shown) == 1 else 2
    figure = small_multiples(
        [_contrast_panel_title(task, uniform_rates) for task in shown],
        columns=columns,
        x_title="tensor (model order)",
        y_title="drop rate",
    )
    palette = px.colors.qualitative.Plotly
    placed = []  # (trace, panel index)
    for index, task in enumerate(shown):
        traces = _contrast_traces(
            ordered[ordered["task"] == task],
            task,
            uniform_rates.get(task),
            colour=palette[index % len(palette)],
            last_position=len(order) - 1,
        )
        placed += [(trace, index) for trace in traces]
    add_to_panels(figure, placed, columns)
    figure.update_yaxes(range=rate_axis_range(unit_scale))
    figure.update_layout(
        title="TADrop per tensor (solid) vs one uniform rate per task (dashed)",
        showlegend=len(shown) == 1,
    )
    return figure


def _contrast_traces(
    rows: pd.DataFrame, task: str, uniform: float | None, *, colour: str, last_position: int
) -> list[go.Scatter]:
    """One task's TADrop rates along the model, and its uniform rate as a dashed line."""
    traces = [
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
    ]
    if uniform is not None:
        traces.append(
            go.Scatter(
                x=[0, last_position],
                y=[uniform, uniform],
                mode="lines",
                line={"color": colour, "dash": "dash"},
                name=f"{task}: uniform {uniform:.3f}",
            )
        )
    return traces


def _contrast_panel_title(task: str, uniform_rates: Mapping[str, float]) -> str:
    if task not in uniform_rates:
        return str(task)
    return f"{task} (uniform {uniform_rates[task]:.3f})"


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


def component_drop_rates(rates: pd.DataFrame, task: str, *, unit_scale: bool = False) -> go.Figure:
    """One task's drop rate by component kind (paper Fig. 6): a bar per kind (numel-weighted
    mean over its tensors), one point per layer of that kind, coloured by depth."""
    task_rates = rates[rates["task"] == task] if not rates.empty else rates
    if task_rates.empty:
        return empty_figure(f"No drop rates for the task {task!r}.")
    figure = component_drop_rates_by_task(task_rates, unit_scale=unit_scale)
    figure.update_layout(title=f"{task}: drop rate by component (bars), each layer a point")
    return figure


def component_drop_rates_by_task(rates: pd.DataFrame, *, unit_scale: bool = False) -> go.Figure:
    """Drop rate by component kind for every task, one panel each on shared axes (paper
    Fig. 7): the ``component_drop_rates`` figure as small multiples."""
    if rates.empty:
        return empty_figure("No tensor to show.")
    tasks = list(pd.unique(rates["task"]))
    kinds = list(pd.unique(rates["kind"]))  # model order
    columns = min(len(tasks), 3)
    figure = small_multiples(
        tasks, columns=columns, x_title="component", y_title="drop rate d", panel_height=260
    )
    means = weighted_drop_rate(rates, ["task", "kind"])  # one groupby for every panel
    layered = with_layers(rates)
    per_layer = (
        weighted_drop_rate(layered, ["task", "kind", "layer"]).rename("drop_rate").reset_index()
        if not layered.empty
        else None
    )
    placed = []  # (trace, panel index)
    for index, task in enumerate(tasks):
        task_means = means.xs(task, level="task").reindex(kinds).dropna()
        task_layers = None if per_layer is None else per_layer[per_layer["task"] == task]
        traces = _component_traces(task_means, task_layers, first=index == 0)
        placed += [(trace, index) for trace in traces]
    add_to_panels(figure, placed, columns)
    figure.update_xaxes(type="category", categoryorder="array", categoryarray=kinds)
    figure.update_yaxes(range=rate_axis_range(unit_scale))
    figure.update_layout(
        title="Drop rate by component, one panel per task (bars: numel-weighted mean; points: "
        "layers)",
        legend={"orientation": "h", "y": -0.15},
    )
    return figure


def _component_traces(
    means: pd.Series, per_layer: pd.DataFrame | None, *, first: bool
) -> list[go.Bar | go.Scatter]:
    """One task's bars (mean d by kind) and points (d by kind and layer)."""
    bars = go.Bar(
        x=list(means.index),
        y=means.to_numpy(),
        marker_color=COMPONENT_BAR_COLOUR,
        opacity=0.6,
        name="kind: numel-weighted mean d",
        legendgroup="kind",
        showlegend=first,
        hovertemplate="%{x}<br>mean drop rate %{y:.3f}<extra></extra>",
    )
    if per_layer is None or per_layer.empty:
        return [bars]
    points = go.Scatter(
        x=per_layer["kind"],
        y=per_layer["drop_rate"],
        mode="markers",
        marker={
            "color": per_layer["layer"],
            "colorscale": "Viridis",
            "size": 7,
            "showscale": first,
            "colorbar": {"title": {"text": "layer", "side": "right"}, "len": 0.5},
        },
        customdata=per_layer[["layer"]].to_numpy(),
        name="one layer",
        legendgroup="layer",
        showlegend=first,
        hovertemplate="%{x}, layer %{customdata[0]}<br>drop rate %{y:.3f}<extra></extra>",
    )
    return [bars, points]

"""Plotly figures of the dashboard: each is a pure function, DataFrame (or array) in, Figure out.

No streamlit here and no session state: the pages pass what they show. The statistics table
has the columns of ``tadrop.stats.compute_stats`` (``task, tensor, layer, kind, ...``); a
drop-rate table is any frame with ``task, tensor, layer, kind, numel, drop_rate``. What this
module computes is only what a chart needs to be drawn: groupings for the axes and medians or
means of a layer's tensors for a heatmap cell.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from tadrop.names import component_group

# Figures carry no template: in the app Streamlit's theme styles them, and exports apply
# EXPORT_TEMPLATE (setting a template costs ~15 ms per figure, a slider move draws three).
EXPORT_TEMPLATE = "plotly_white"
DROP_RATE_SCALE = "YlOrRd"  # light = kept, dark red = dropped

# Statistics a researcher can map onto the heterogeneity figures: column -> axis label.
STATISTIC_LABELS: dict[str, str] = {
    "std": "std of τ",
    "mean_abs": "mean |τ|",
    "kurtosis": "kurtosis of τ",
    "drop_rate": "quantile ratio Q_a / (Q_b + ε)",
    "l2": "‖τ‖₂",
    "max_abs": "max |τ|",
    "zero_frac": "fraction of zeros",
}

# Colours of the merge results, fixed so that the same bar means the same thing everywhere.
RESULT_COLUMNS: dict[str, str] = {
    "base": "#9e9e9e",
    "individual": "#4c78a8",
    "merged": "#f58518",
}


def statistic_label(statistic: str) -> str:
    """Axis label of a statistics-table column."""
    return STATISTIC_LABELS.get(statistic, statistic)


def empty_figure(message: str) -> go.Figure:
    """A blank figure that says why there is nothing to draw."""
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_layout(xaxis_visible=False, yaxis_visible=False, height=260)
    return figure


def _with_layers(stats: pd.DataFrame) -> pd.DataFrame:
    """Rows that belong to a numbered layer, with ``layer`` as int."""
    layered = stats[stats["layer"].notna()].copy()
    layered["layer"] = layered["layer"].astype(int)
    return layered


def _tensor_order(frame: pd.DataFrame) -> list[str]:
    """Tensor names in the order the model lists them (first appearance in the table)."""
    return list(pd.unique(frame["tensor"]))


def statistic_heatmap(stats: pd.DataFrame, statistic: str) -> go.Figure:
    """Task x layer heatmap of one statistic: each cell is the median over the layer's tensors."""
    layered = _with_layers(stats)
    if layered.empty:
        return empty_figure("No tensor with a layer index in this selection.")
    grid = layered.pivot_table(index="task", columns="layer", values=statistic, aggfunc="median")
    label = statistic_label(statistic)
    return _heatmap(
        grid,
        colorscale="Viridis",
        x_title="layer",
        value_label=label,
        title=f"{label} per task and layer (median over the layer's tensors)",
    )


def _heatmap(
    grid: pd.DataFrame,
    *,
    colorscale: str,
    x_title: str,
    value_label: str,
    title: str,
    zmin: float | None = None,
    zmax: float | None = None,
) -> go.Figure:
    """A heatmap of a pivoted table, columns as categories (plain graph_objects: fast)."""
    figure = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(dtype=np.float64),
            x=[str(column) for column in grid.columns],
            y=[str(index) for index in grid.index],
            zmin=zmin,
            zmax=zmax,
            colorscale=colorscale,
            colorbar={"title": value_label},
            hovertemplate="%{y}<br>" + x_title + " %{x}<br>%{z:.4g}<extra></extra>",
        )
    )
    figure.update_xaxes(type="category", title=x_title)
    figure.update_layout(title=title)
    return figure


def group_distribution_by_layer(stats: pd.DataFrame, statistic: str) -> go.Figure:
    """Attention vs MLP: distribution of a statistic over tensors and tasks, per layer."""
    layered = _with_layers(stats)
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
    in_layer = _with_layers(stats)
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
    projections = _with_layers(stats)
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


def drop_rate_heatmap(rates: pd.DataFrame) -> go.Figure:
    """TADrop drop rate over task x tensor, tensors in model order."""
    if rates.empty:
        return empty_figure("No tensor to show.")
    grid = rates.pivot_table(index="task", columns="tensor", values="drop_rate", aggfunc="first")
    grid = grid[_tensor_order(rates)]
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
    figure.update_layout(title="TADrop drop rate per task and tensor")
    return figure


def drop_rate_by_kind_layer(rates: pd.DataFrame) -> go.Figure:
    """Mean drop rate by component kind x layer, over tasks and tensors."""
    layered = _with_layers(rates)
    if layered.empty:
        return empty_figure("No tensor with a layer index to show.")
    grid = layered.pivot_table(index="kind", columns="layer", values="drop_rate", aggfunc="mean")
    return _heatmap(
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
    order = {name: position for position, name in enumerate(_tensor_order(rates))}
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


def sparsity_sweep(sweep: pd.DataFrame) -> go.Figure:
    """Accuracy against sparsity, one line per sparsifier (columns sparsifier, sparsity, score)."""
    if sweep.empty:
        return empty_figure("No sweep yet.")
    figure = px.line(
        sweep.sort_values("sparsity"),
        x="sparsity",
        y="score",
        color="sparsifier",
        markers=True,
        labels={"sparsity": "overall sparsity", "score": "mean normalized score"},
        title="Merged score against sparsity",
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


def all_figures(
    stats: pd.DataFrame,
    rates: pd.DataFrame,
    uniform_rates: Mapping[str, float],
    *,
    results: pd.DataFrame | None = None,
    sweep: pd.DataFrame | None = None,
    grid: pd.DataFrame | None = None,
    statistic: str = "std",
) -> dict[str, go.Figure]:
    """Every figure of the dashboard for one family and session, by file-friendly name."""
    weights = stats[stats["param"] == "weight"] if (stats["param"] == "weight").any() else stats
    drawn = {
        f"heterogeneity_{statistic}_task_by_layer": statistic_heatmap(weights, statistic),
        f"heterogeneity_{statistic}_attention_vs_mlp": group_distribution_by_layer(
            weights, statistic
        ),
        f"heterogeneity_{statistic}_up_vs_down": up_vs_down(weights, statistic),
        "landscape_drop_rate_task_by_tensor": drop_rate_heatmap(rates),
        "landscape_drop_rate_kind_by_layer": drop_rate_by_kind_layer(rates),
        "landscape_tadrop_vs_uniform": uniform_rate_contrast(rates, uniform_rates),
    }
    if results is not None and not results.empty:
        drawn["merge_results"] = results_bars(results)
        if results["normalized"].notna().any():
            drawn["merge_results_normalized"] = results_bars(results, value="normalized")
    if sweep is not None and not sweep.empty:
        drawn["merge_sparsity_sweep"] = sparsity_sweep(sweep)
    if grid is not None and not grid.empty:
        drawn["merge_ab_sensitivity"] = sensitivity_heatmap(grid)
    return drawn

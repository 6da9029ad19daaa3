"""What every figure shares: labels, colours, the empty figure and the plain heatmap.

Figures are pure functions, DataFrame (or array) in, plotly Figure out: no streamlit, no
session state. The dashboard draws them and the report exports them (``tadrop.figures.export``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

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


def with_layers(stats: pd.DataFrame) -> pd.DataFrame:
    """Rows that belong to a numbered layer, with ``layer`` as int."""
    layered = stats[stats["layer"].notna()].copy()
    layered["layer"] = layered["layer"].astype(int)
    return layered


def tensor_order(frame: pd.DataFrame) -> list[str]:
    """Tensor names in the order the model lists them (first appearance in the table)."""
    return list(pd.unique(frame["tensor"]))


def heatmap(
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

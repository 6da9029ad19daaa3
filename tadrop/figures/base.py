"""What every figure shares: labels, colours, the empty figure and the plain heatmap.

Figures are pure functions, DataFrame (or array) in, plotly Figure out: no streamlit, no
session state. The dashboard draws them and the report exports them (``tadrop.figures.export``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.basedatatypes import BaseTraceType
from plotly.subplots import make_subplots

# Figures carry no template: in the app Streamlit's theme styles them, and exports apply
# EXPORT_TEMPLATE (setting a template costs ~15 ms per figure, a slider move draws three).
EXPORT_TEMPLATE = "plotly_white"
DROP_RATE_SCALE = "YlOrRd"  # light = kept, dark red = dropped
# Colours span these percentiles of the data by default: a flat landscape still shows its
# contrast, and a few outlying cells (saturated at the ends) do not wash out the rest. Quick text
# demo at (a, b) = (0.5, 0.95), 606 cells: min-max 0.003-0.64, 2-98th 0.004-0.47 (its three
# near-zero embedding tensors are 3% of the cells), 5-95th 0.23-0.43.
COLOR_PERCENTILES = (5.0, 95.0)
UNIT_RANGE = (0.0, 1.0)  # the "0-1 scale" choice for fractions
# Statistics that are fractions of a tensor's entries, so a 0-1 scale means something for them.
FRACTION_STATISTICS = frozenset({"drop_rate", "zero_frac"})

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


@dataclass(frozen=True)
class ColorRange:
    """Where a heatmap's colour scale starts and ends, and the rule that put it there."""

    zmin: float | None
    zmax: float | None
    rule: str  # said in the colour-bar title, e.g. "colours: 0.23-0.43 (5-95th percentile)"


def color_range(values: object, *, unit_scale: bool = False) -> ColorRange:
    """The colour range of a heatmap's cells: ``UNIT_RANGE`` when ``unit_scale``, else the
    data's ``COLOR_PERCENTILES`` (NaN cells ignored; a flat grid gets a small band around its
    one value so that it still draws)."""
    if unit_scale:
        return ColorRange(*UNIT_RANGE, "colours: fixed 0-1 scale")
    cells = np.asarray(values, dtype=np.float64).ravel()
    cells = cells[np.isfinite(cells)]
    if cells.size == 0:
        return ColorRange(None, None, "")
    low, high = (float(value) for value in np.percentile(cells, COLOR_PERCENTILES))
    if high <= low:
        pad = max(abs(low) * 0.05, 1e-12)
        return ColorRange(low - pad, high + pad, f"colours: every cell is {low:.3g}")
    percent_low, percent_high = (f"{value:g}" for value in COLOR_PERCENTILES)
    return ColorRange(
        low, high, f"colours: {low:.3g}-{high:.3g} ({percent_low}-{percent_high}th percentile)"
    )


def rate_axis_range(unit_scale: bool) -> list[float] | None:
    """A drop-rate axis: fixed at 0-1 when asked, else fitted to the data (plotly's autorange)."""
    return list(UNIT_RANGE) if unit_scale else None


def small_multiples(
    panels: Sequence[str],
    *,
    x_title: str,
    y_title: str,
    columns: int = 3,
    panel_height: int = 240,
) -> go.Figure:
    """An empty grid of panels, one per name, ``columns`` wide, sharing both axes and their
    titles (the paper's Fig. 7 layout); fill the panels with ``add_to_panels``."""
    if columns < 1:
        raise ValueError(f"A grid of panels needs at least one column, not {columns}.")
    rows = max(1, math.ceil(len(panels) / columns))
    figure = make_subplots(
        rows=rows,
        cols=columns,
        shared_xaxes="all",
        shared_yaxes="all",
        subplot_titles=[str(panel) for panel in panels],
        vertical_spacing=min(0.3 / rows, 0.12),
        horizontal_spacing=0.04,
        x_title=x_title,
        y_title=y_title,
    )
    figure.update_layout(height=120 + panel_height * rows)
    return figure


def add_to_panels(
    figure: go.Figure, placed: Sequence[tuple[BaseTraceType, int]], columns: int
) -> None:
    """Add ``(trace, panel index)`` pairs to a ``small_multiples`` figure in one call (one
    ``add_trace`` per trace costs a layout validation each)."""
    figure.add_traces(
        [trace for trace, _ in placed],
        rows=[index // columns + 1 for _, index in placed],
        cols=[index % columns + 1 for _, index in placed],
    )


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
    unit_scale: bool = False,
) -> go.Figure:
    """A heatmap of a pivoted table, columns as categories (plain graph_objects: fast); its
    colours follow ``color_range`` and the colour bar says which rule set them."""
    cells = grid.to_numpy(dtype=np.float64)
    scale = color_range(cells, unit_scale=unit_scale)
    figure = go.Figure(
        go.Heatmap(
            z=cells,
            x=[str(column) for column in grid.columns],
            y=[str(index) for index in grid.index],
            zmin=scale.zmin,
            zmax=scale.zmax,
            colorscale=colorscale,
            colorbar={
                "title": {"text": f"{value_label}<br><sub>{scale.rule}</sub>", "side": "right"}
            },
            hovertemplate="%{y}<br>" + x_title + " %{x}<br>%{z:.4g}<extra></extra>",
        )
    )
    figure.update_xaxes(type="category", title=x_title)
    figure.update_layout(title=title)
    return figure

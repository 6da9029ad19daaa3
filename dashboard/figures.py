"""The dashboard's figures: the drawing functions live in ``tadrop.figures`` (shared with the
report); this module names them for the pages and picks the set the Export page writes.
No streamlit here and no session state: the pages pass what they show."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

import tadrop.figures as shared
from tadrop.figures import *  # noqa: F403  (the pages call figures.<name> for each shared figure)

__all__ = [*shared.__all__, "all_figures"]


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
        f"heterogeneity_{statistic}_task_by_layer": shared.statistic_heatmap(weights, statistic),
        f"heterogeneity_{statistic}_attention_vs_mlp": shared.group_distribution_by_layer(
            weights, statistic
        ),
        f"heterogeneity_{statistic}_up_vs_down": shared.up_vs_down(weights, statistic),
        "landscape_drop_rate_task_by_tensor": shared.drop_rate_heatmap(rates),
        "landscape_drop_rate_kind_by_layer": shared.drop_rate_by_kind_layer(rates),
        "landscape_tadrop_vs_uniform": shared.uniform_rate_contrast(rates, uniform_rates),
    }
    if results is not None and not results.empty:
        drawn["merge_results"] = shared.results_bars(results)
        if results["normalized"].notna().any():
            drawn["merge_results_normalized"] = shared.results_bars(results, value="normalized")
    if sweep is not None and not sweep.empty:
        drawn["merge_sparsity_sweep"] = shared.sparsity_sweep(sweep)
    if grid is not None and not grid.empty:
        drawn["merge_ab_sensitivity"] = shared.sensitivity_heatmap(grid)
    return drawn

"""The dashboard's figures: the drawing functions live in ``tadrop.figures`` (shared with the
report); this module names them for the pages and picks the set the Export page writes.
No streamlit here and no session state: the pages pass what they show."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

import tadrop.figures as shared
from tadrop.figures import *  # noqa: F403  (the pages call figures.<name> for each shared figure)
from tadrop.stats import tensor_contributions

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
    task: str | None = None,
    unit_scale: bool = False,
) -> dict[str, go.Figure]:
    """Every figure of the dashboard for one family and session, by file-friendly name.

    ``task``: the task of the one-task figures (Fig. 6, sparsity contributions; default the
    first); ``unit_scale``: drop rates on a fixed 0-1 scale instead of fitted to the data."""
    weights = stats[stats["param"] == "weight"] if (stats["param"] == "weight").any() else stats
    task = str(rates["task"].iloc[0]) if task is None and not rates.empty else (task or "")
    task_file = re.sub(r"[^A-Za-z0-9_.-]+", "_", task) or "none"
    fraction_scale = unit_scale and statistic in shared.FRACTION_STATISTICS
    drawn = {
        f"heterogeneity_{statistic}_task_by_layer": shared.statistic_heatmap(
            weights, statistic, unit_scale=fraction_scale
        ),
        f"heterogeneity_{statistic}_attention_vs_mlp": shared.group_distribution_by_layer(
            weights, statistic
        ),
        f"heterogeneity_{statistic}_up_vs_down": shared.up_vs_down(weights, statistic),
        "landscape_drop_rate_task_by_tensor": shared.drop_rate_heatmap(
            rates, unit_scale=unit_scale
        ),
        "landscape_drop_rate_kind_by_layer": shared.drop_rate_by_kind_layer(
            rates, unit_scale=unit_scale
        ),
        f"landscape_fig6_components_{task_file}": shared.component_drop_rates(
            rates, task, unit_scale=unit_scale
        ),
        "landscape_fig7_components_by_task": shared.component_drop_rates_by_task(
            rates, unit_scale=unit_scale
        ),
        "landscape_tadrop_vs_uniform": shared.uniform_rate_contrast(
            rates, uniform_rates, unit_scale=unit_scale
        ),
        f"landscape_sparsity_contributions_{task_file}": shared.sparsity_contributions(
            tensor_contributions(stats, rates["drop_rate"]), task
        ),
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

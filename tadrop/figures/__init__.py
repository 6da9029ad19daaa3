"""Plotly figures: DataFrame in, Figure out, no streamlit. The dashboard draws them, the report
exports them as SVG (``tadrop.figures.export``, kaleido)."""

from tadrop.figures.base import (
    DROP_RATE_SCALE,
    FRACTION_STATISTICS,
    RESULT_COLUMNS,
    STATISTIC_LABELS,
    ColorRange,
    color_range,
    empty_figure,
    statistic_label,
)
from tadrop.figures.contributions import CONTRIBUTION_RANKINGS, sparsity_contributions
from tadrop.figures.export import EXPORT_TEMPLATE, export_images, export_problem, figures_to_svg
from tadrop.figures.landscape import (
    component_drop_rates,
    component_drop_rates_by_task,
    drop_rate_by_component,
    drop_rate_by_kind_layer,
    drop_rate_by_layer,
    drop_rate_heatmap,
    uniform_rate_contrast,
    weighted_drop_rate,
)
from tadrop.figures.results import results_bars, sensitivity_heatmap, sparsity_sweep
from tadrop.figures.statistics import (
    group_distribution_by_layer,
    kinds_in_layer,
    magnitude_histogram,
    statistic_heatmap,
    up_vs_down,
)

__all__ = [
    "CONTRIBUTION_RANKINGS",
    "DROP_RATE_SCALE",
    "FRACTION_STATISTICS",
    "ColorRange",
    "color_range",
    "component_drop_rates",
    "component_drop_rates_by_task",
    "EXPORT_TEMPLATE",
    "RESULT_COLUMNS",
    "STATISTIC_LABELS",
    "drop_rate_by_component",
    "drop_rate_by_kind_layer",
    "drop_rate_by_layer",
    "drop_rate_heatmap",
    "empty_figure",
    "export_images",
    "export_problem",
    "figures_to_svg",
    "group_distribution_by_layer",
    "kinds_in_layer",
    "magnitude_histogram",
    "results_bars",
    "sensitivity_heatmap",
    "sparsity_contributions",
    "sparsity_sweep",
    "statistic_heatmap",
    "statistic_label",
    "uniform_rate_contrast",
    "up_vs_down",
    "weighted_drop_rate",
]

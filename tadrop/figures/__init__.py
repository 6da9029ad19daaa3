"""Plotly figures: DataFrame in, Figure out, no streamlit. The dashboard draws them, the report
exports them as SVG (``tadrop.figures.export``, kaleido)."""

from tadrop.figures.base import (
    DROP_RATE_SCALE,
    RESULT_COLUMNS,
    STATISTIC_LABELS,
    empty_figure,
    statistic_label,
)
from tadrop.figures.export import EXPORT_TEMPLATE, export_images, export_problem, figures_to_svg
from tadrop.figures.landscape import (
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
    "DROP_RATE_SCALE",
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
    "sparsity_sweep",
    "statistic_heatmap",
    "statistic_label",
    "uniform_rate_contrast",
    "up_vs_down",
    "weighted_drop_rate",
]

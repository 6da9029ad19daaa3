"""Per-tensor statistics of task vectors, with exact quantile sketches of |tau|: one row per
task x tensor (``row.py``), the family's table and what is read from it (``table.py``), each
tensor's share of a task's sparsity (``contributions.py``)."""

from tadrop.stats.contributions import (
    DOMINANT_SHARE,
    NEAR_ZERO_DROP_RATE,
    ZERO_HEAVY_FRACTION,
    SparsityFacts,
    sparsity_facts,
    tensor_contributions,
)
from tadrop.stats.files import load_stats, save_stats
from tadrop.stats.row import (
    SKETCH_GRID,
    SKETCH_POINTS,
    quantiles_from_sorted,
    sorted_magnitudes,
    tensor_stats,
)
from tadrop.stats.table import (
    COLUMNS,
    TensorCut,
    abs_histogram,
    compute_stats,
    drop_rates_from_sketch,
    overall_sparsity,
    quantiles_from_sketch,
    sketch_matrix,
    tensor_cut,
)

__all__ = [
    "COLUMNS",
    "DOMINANT_SHARE",
    "NEAR_ZERO_DROP_RATE",
    "SKETCH_GRID",
    "SKETCH_POINTS",
    "SparsityFacts",
    "TensorCut",
    "ZERO_HEAVY_FRACTION",
    "abs_histogram",
    "compute_stats",
    "drop_rates_from_sketch",
    "load_stats",
    "overall_sparsity",
    "quantiles_from_sketch",
    "quantiles_from_sorted",
    "save_stats",
    "sketch_matrix",
    "sorted_magnitudes",
    "sparsity_facts",
    "tensor_contributions",
    "tensor_cut",
    "tensor_stats",
]

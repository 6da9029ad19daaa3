"""Experiments: sweeps of merges scored by an evaluator (the one loop the CLI, the dashboard
and the report share) and the whole-model state dicts they score."""

from tadrop.experiments.states import ModelFor, base_state, finetuned_state, scaled_model_for
from tadrop.experiments.sweeps import (
    BASELINE,
    MATCHED_SPARSIFIERS,
    MatchedPoint,
    Point,
    PointRun,
    QuantileSetting,
    ab_points,
    grid_points,
    matched_sparsity_points,
    run_points,
    solve_tadrop_a,
    sparsity_points,
    tadrop_sparsity,
    uniform_rate_params,
)

__all__ = [
    "BASELINE",
    "MATCHED_SPARSIFIERS",
    "MatchedPoint",
    "QuantileSetting",
    "matched_sparsity_points",
    "solve_tadrop_a",
    "tadrop_sparsity",
    "uniform_rate_params",
    "ModelFor",
    "Point",
    "PointRun",
    "ab_points",
    "base_state",
    "finetuned_state",
    "grid_points",
    "run_points",
    "scaled_model_for",
    "sparsity_points",
]

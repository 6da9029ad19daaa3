"""Experiments: sweeps of merges scored by an evaluator (the one loop the CLI, the dashboard
and the report share) and the whole-model state dicts they score."""

from tadrop.experiments.states import ModelFor, base_state, finetuned_state, scaled_model_for
from tadrop.experiments.sweeps import (
    Point,
    PointRun,
    ab_points,
    grid_points,
    run_points,
    sparsity_points,
)

__all__ = [
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

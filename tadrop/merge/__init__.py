"""Merge methods: one module each, a pure function beside each class."""

from tadrop.merge.averaging import WeightAveraging, weight_average_merge
from tadrop.merge.base import MergeCancelled, MergeMethod, MergeResult, iter_sparsified, run_merge
from tadrop.merge.emr import EMR, EMRResult, emr_merge, emr_unify
from tadrop.merge.folder import merge_to_folder
from tadrop.merge.task_arithmetic import TaskArithmetic, task_arithmetic_merge
from tadrop.merge.ties import TIES, disjoint_merge, elect_signs, ties_merge

__all__ = [
    "EMR",
    "TIES",
    "EMRResult",
    "MergeCancelled",
    "MergeMethod",
    "MergeResult",
    "TaskArithmetic",
    "WeightAveraging",
    "disjoint_merge",
    "elect_signs",
    "emr_merge",
    "emr_unify",
    "iter_sparsified",
    "merge_to_folder",
    "run_merge",
    "task_arithmetic_merge",
    "ties_merge",
    "weight_average_merge",
]

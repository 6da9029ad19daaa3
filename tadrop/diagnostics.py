"""Data-free diagnostics of a merge: how much of each task vector the merged model keeps.

Per task k, with delta = theta_merged(k) - theta_pre over all merged tensors:
- ``cosine``: cos(delta, tau_k); ``rel_l2``: ||delta - tau_k|| / ||tau_k||;
- the same over the entries the sparsifier kept for task k (``cosine_kept``, ``rel_l2_kept``;
  equal to the full ones when there is no sparsifier).
Between tasks j, k:
- ``sign_conflict``: among entries where both tau_j and tau_k are non-zero, the fraction with
  opposite signs; ``mask_overlap``: Jaccard index of the two keep-masks (1 without sparsifier).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import torch

from tadrop.merge.base import MergeResult, sparsify_tensor
from tadrop.task_vectors import iter_task_vectors

# One line per column of the two tables, for captions and column help (the formulas above).
COLUMN_HELP: dict[str, str] = {
    "cosine": "cos(δ_k, τ_k), δ_k = θ_merged − θ_pre: 1 = the merge moves the base exactly "
    "along task k's vector, 0 = orthogonal to it.",
    "rel_l2": "‖δ_k − τ_k‖ / ‖τ_k‖: how far the merge lands from task k's fine-tuned model, "
    "relative to the size of its task vector; 0 = on it.",
    "cosine_kept": "cosine over the entries the sparsifier kept for task k only.",
    "rel_l2_kept": "rel_l2 over the entries the sparsifier kept for task k only.",
    "sign_conflict": "Among entries where both task vectors are non-zero, the fraction with "
    "opposite signs: where the two tasks pull the weights apart.",
    "mask_overlap": "Jaccard index |keep_j ∩ keep_k| / |keep_j ∪ keep_k| of the two tasks' "
    "keep-masks: 1 = they keep the same entries (always 1 without a sparsifier).",
}


def _cosine(dot: float, norm_a: float, norm_b: float) -> float:
    return dot / math.sqrt(norm_a * norm_b) if norm_a > 0 and norm_b > 0 else float("nan")


def _rel_l2(diff_sq: float, norm_sq: float) -> float:
    return math.sqrt(diff_sq / norm_sq) if norm_sq > 0 else float("nan")


def merge_diagnostics(
    result: MergeResult, *, device: str | torch.device = "cpu"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-task table, pairwise table) as described in the module docstring."""
    family = result.family
    tasks = family.task_names
    count = len(tasks)
    # accumulators in float64: [dot, |delta|^2, |tau|^2, |delta - tau|^2] over all / kept entries
    full = np.zeros((count, 4))
    kept = np.zeros((count, 4))
    conflicts = np.zeros((count, count))
    both_nonzero = np.zeros((count, count))
    intersection = np.zeros((count, count))
    union = np.zeros((count, count))
    for tensor in iter_task_vectors(family, device=device):
        sparse = sparsify_tensor(tensor, result.sparsifier, tasks)
        masks = (
            sparse.keep_masks
            if sparse.keep_masks is not None
            else torch.ones_like(tensor.task_vectors, dtype=torch.bool)
        )
        signs = torch.sign(tensor.task_vectors)
        for index, task in enumerate(tasks):
            tau = tensor.task_vectors[index].double()
            delta = (
                result.merged_tensor(task, tensor.name).to(tau.device).double()
                - tensor.base.double()
            )
            for accumulator, selector in ((full, None), (kept, masks[index])):
                t, d = (tau, delta) if selector is None else (tau[selector], delta[selector])
                accumulator[index] += [
                    float((t * d).sum()),
                    float((d * d).sum()),
                    float((t * t).sum()),
                    float(((d - t) ** 2).sum()),
                ]
        for j, k in itertools.combinations(range(count), 2):
            nonzero = (signs[j] != 0) & (signs[k] != 0)
            both_nonzero[j, k] += float(torch.count_nonzero(nonzero))
            conflicts[j, k] += float(torch.count_nonzero(nonzero & (signs[j] != signs[k])))
            intersection[j, k] += float(torch.count_nonzero(masks[j] & masks[k]))
            union[j, k] += float(torch.count_nonzero(masks[j] | masks[k]))
    pair_counts = {"conflicts": conflicts, "both_nonzero": both_nonzero}
    pair_counts |= {"intersection": intersection, "union": union}
    return _per_task_table(tasks, full, kept), _pair_table(tasks, pair_counts)


def _per_task_table(tasks: list[str], full: np.ndarray, kept: np.ndarray) -> pd.DataFrame:
    """Cosine and relative L2 of each task's merged delta to its task vector (all / kept)."""
    return pd.DataFrame(
        {
            "task": tasks,
            "cosine": [_cosine(row[0], row[1], row[2]) for row in full],
            "rel_l2": [_rel_l2(row[3], row[2]) for row in full],
            "cosine_kept": [_cosine(row[0], row[1], row[2]) for row in kept],
            "rel_l2_kept": [_rel_l2(row[3], row[2]) for row in kept],
        }
    )


def _pair_table(tasks: list[str], counts: dict[str, np.ndarray]) -> pd.DataFrame:
    """Sign conflicts among entries both tasks moved, and the overlap of their keep-masks."""
    conflicts, both_nonzero = counts["conflicts"], counts["both_nonzero"]
    intersection, union = counts["intersection"], counts["union"]
    pairs = [
        {
            "task_a": tasks[j],
            "task_b": tasks[k],
            "sign_conflict": conflicts[j, k] / both_nonzero[j, k]
            if both_nonzero[j, k]
            else float("nan"),
            "mask_overlap": intersection[j, k] / union[j, k] if union[j, k] else float("nan"),
        }
        for j, k in itertools.combinations(range(len(tasks)), 2)
    ]
    return pd.DataFrame(pairs, columns=["task_a", "task_b", "sign_conflict", "mask_overlap"])

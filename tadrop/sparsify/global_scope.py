"""Exact drop counts when one magnitude threshold spans a whole task vector (all tensors).

TIES as published trims the k% smallest |tau| over the whole model; mergekit trims per tensor.
Holding every |tau| of a large model in memory is not an option, so the exact global
order statistic is found in two passes over the family, from the bit patterns of the float32
|tau| (the walk's task vectors are float32; a non-negative float's bits order like the number):

1. a histogram of the top 16 bits, summed over tensors, names the bucket holding the
   n_drop-th smallest entry and how many entries lie below it;
2. per tensor, the entries below that bucket are counted and the low 16 bits of the entries
   inside it are histogrammed (kept sparse: only the bins that occur), which gives the exact
   threshold bit pattern; entries equal to it are dropped in walk order (tensor order, then
   flat index), so memory stays small even when most entries tie (e.g. all zeros).

The result is a drop count per (task, tensor); each tensor's keep-mask is then the per-tensor
exact selection of that many smallest entries, which breaks ties the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from tadrop.task_vectors import ModelFamily

_BUCKETS = 1 << 15  # sign bit is 0 for |tau|, so the top 16 bits span 15 bits
_LOW_BINS = 1 << 16


def _magnitude_bits(task_vector: torch.Tensor) -> np.ndarray:
    """The int32 bit patterns of |task_vector| (float32), flat, on the CPU."""
    magnitude = task_vector.float().abs().cpu().contiguous()
    return magnitude.view(-1).numpy().view(np.int32)


def global_drop_counts(
    family: ModelFamily,
    drop_count: Callable[[str, int], int],
    *,
    device: str | torch.device = "auto",
    below_only: bool = False,
) -> dict[str, dict[str, int]]:
    """Per task and tensor, how many entries a global magnitude threshold drops.

    ``drop_count(task, total)``: how many of the task's ``total`` entries (over all tensors)
    to drop; exactly that many are dropped. ``below_only``: drop only the entries strictly
    smaller than the ``drop_count``-th smallest (that entry and all its ties are kept).
    """
    from tadrop.task_vectors import iter_task_vectors

    tasks = family.task_names
    histograms = {task: np.zeros(_BUCKETS, dtype=np.int64) for task in tasks}
    total = 0
    for tensor in iter_task_vectors(family, device=device):
        total += tensor.task_vectors[0].numel()
        for index, task in enumerate(tasks):
            high = _magnitude_bits(tensor.task_vectors[index]) >> 16
            histograms[task] += np.bincount(high, minlength=_BUCKETS)
    targets = {task: int(drop_count(task, total)) for task in tasks}
    bucket_of, below_bucket = {}, {}
    for task in tasks:
        if targets[task] == 0:
            continue
        cumulative = np.cumsum(histograms[task])
        bucket = int(np.searchsorted(cumulative, targets[task]))
        bucket_of[task] = bucket
        below_bucket[task] = int(cumulative[bucket - 1]) if bucket > 0 else 0
    counts: dict[str, dict[str, int]] = {task: {} for task in tasks}
    pieces: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {task: [] for task in tasks}
    for tensor in iter_task_vectors(family, device=device, check_finite=False):
        for index, task in enumerate(tasks):
            if task not in bucket_of:
                counts[task][tensor.name] = 0
                continue
            bits = _magnitude_bits(tensor.task_vectors[index])
            high = bits >> 16
            counts[task][tensor.name] = int(np.count_nonzero(high < bucket_of[task]))
            low = bits[high == bucket_of[task]] & 0xFFFF
            piece = np.bincount(low, minlength=_LOW_BINS)
            bins = np.flatnonzero(piece)
            pieces[task].append((tensor.name, bins, piece[bins]))
    for task in bucket_of:
        _take_in_bucket(counts[task], pieces[task], targets[task] - below_bucket[task], below_only)
    return counts


def _take_in_bucket(
    counts: dict[str, int],
    pieces: list[tuple[str, np.ndarray, np.ndarray]],
    n_take: int,
    below_only: bool = False,
) -> None:
    """Add to ``counts`` the ``n_take`` smallest in-bucket entries, ties in walk order
    (``below_only``: only the entries strictly below the ``n_take``-th smallest).

    ``pieces``: per tensor in walk order, the low-16-bit bins present and their counts."""
    if n_take <= 0 or not pieces:
        return
    histogram = np.zeros(_LOW_BINS, dtype=np.int64)
    for _, bins, bin_counts in pieces:
        histogram[bins] += bin_counts
    cumulative = np.cumsum(histogram)
    threshold = int(np.searchsorted(cumulative, n_take))  # the n_take-th smallest's low bits
    ties_left = (
        0 if below_only else n_take - (int(cumulative[threshold - 1]) if threshold > 0 else 0)
    )
    for name, bins, bin_counts in pieces:
        counts[name] += int(bin_counts[bins < threshold].sum())
        ties = int(bin_counts[bins == threshold].sum())
        taken = min(ties, ties_left)
        counts[name] += taken
        ties_left -= taken

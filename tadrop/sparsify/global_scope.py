"""Exact drop counts when one magnitude threshold spans a whole task vector (all tensors).

TIES as published trims the k% smallest |tau| over the whole model; mergekit trims per tensor.
Holding every |tau| of a large model in memory is not an option, so the exact global
order statistic is found in two passes over the family, from the bit patterns of the float32
|tau| (the walk's task vectors are float32; a non-negative float's bits order like the number):

1. a histogram of the top 16 bits (bits >> 15), summed over tensors, names the bucket holding
   the n_drop-th smallest entry and how many entries lie below it;
2. per tensor, the entries below that bucket are counted and the low 15 bits of the entries
   inside it are histogrammed (kept sparse: only the bins that occur), which gives the exact
   threshold bit pattern; entries equal to it are dropped in walk order (tensor order, then
   flat index), so memory stays small even when most entries tie (e.g. all zeros).

On the CPU both passes read tau = theta_task - theta_base inside the C kernel
(``radix.abs_histogram``), from the memory-mapped inputs, without building the task vector;
elsewhere (another device, mixed dtypes, no compiler) from the walk's task vectors, with the
same buckets. The result is a drop count per (task, tensor); each tensor's keep-mask is then
the per-tensor exact selection of that many smallest entries, which breaks ties the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from tadrop.quantiles import radix

if TYPE_CHECKING:
    import torch

    from tadrop.task_vectors import ModelFamily

_TOP, _LOW = radix.TOP_BUCKETS, radix.LOW_BINS
_NON_FINITE = 0x7F800000 >> 15  # buckets at or above hold |tau| = Inf or NaN


def _histogram_of_tau(tau: torch.Tensor, bucket: int | None) -> tuple[np.ndarray, int]:
    """``radix.abs_histogram`` of one task vector already built (any device, float32)."""
    bits = tau.float().abs().cpu().contiguous().view(-1).numpy().view(np.int32)
    top = bits >> 15
    if bucket is None:
        return np.bincount(top, minlength=_TOP), 0
    inside = bits[top == bucket] & (_LOW - 1)
    return np.bincount(inside, minlength=_LOW), int(np.count_nonzero(top < bucket))


def _histograms(
    family: ModelFamily, device, buckets: dict[str, int] | None
) -> Iterator[tuple[str, dict[str, tuple[np.ndarray, int]]]]:
    """Per tensor: {task: histogram} (the top buckets when ``buckets`` is None, else the low
    bits inside each task's bucket; tasks without one are skipped)."""
    from tadrop.task_vectors import iter_task_vectors, resolve_device

    tasks = family.task_names
    wanted = {task: None for task in tasks} if buckets is None else buckets
    for name in family.tensor_names:
        base = family.base.get(name).reshape(-1)
        pairs = {task: family.get_task_tensor(task, name).reshape(-1) for task in wanted}
        direct = resolve_device(device).type == "cpu" and all(
            radix.supports_pair(t, base) and t.is_contiguous() and base.is_contiguous()
            for t in pairs.values()
        )
        if direct:
            found = {task: radix.abs_histogram(t, base, wanted[task]) for task, t in pairs.items()}
            if buckets is None and any(h[_NON_FINITE:].any() for h, _ in found.values()):
                next(iter_task_vectors(family, device=device, names=[name]))  # names the file
        else:
            tensor = next(iter_task_vectors(family, device=device, names=[name]))
            found = {
                task: _histogram_of_tau(tensor.task_vectors[tasks.index(task)], wanted[task])
                for task in wanted
            }
        yield name, found


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
    tasks = family.task_names
    histograms = {task: np.zeros(_TOP, dtype=np.int64) for task in tasks}
    for _, found in _histograms(family, device, None):
        for task, (histogram, _) in found.items():
            histograms[task] += histogram
    total = int(histograms[tasks[0]].sum()) if tasks else 0
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
    for name, found in _histograms(family, device, bucket_of):
        for task in tasks:
            if task not in bucket_of:
                counts[task][name] = 0
                continue
            piece, below = found[task]
            counts[task][name] = below
            bins = np.flatnonzero(piece)
            pieces[task].append((name, bins, piece[bins]))
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
    histogram = np.zeros(_LOW, dtype=np.int64)
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

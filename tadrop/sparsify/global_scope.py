"""Exact drop counts when one magnitude threshold spans a whole task vector (all tensors).

TIES as published trims the k% smallest |tau| over the whole model; mergekit trims per tensor.
Holding every |tau| of a large model in memory is not an option, so the exact global
order statistic is found in two passes over the family:

1. a histogram of the top 16 bits of each float32 |tau| (the bit pattern of a non-negative
   float orders like the number), summed over tensors: it names the bucket holding the
   n_drop-th smallest entry and how many entries lie below it;
2. the entries inside that bucket (a small fraction) are gathered in walk order and selected
   exactly; ties at the threshold are dropped in walk order (tensor order, then flat index).

The result is a drop count per (task, tensor); each tensor's keep-mask is then the per-tensor
exact selection of that many smallest entries, which breaks ties the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tadrop.task_vectors import ModelFamily

_BUCKETS = 1 << 15  # sign bit is 0 for |tau|, so the top 16 bits span 15 bits


def _bucket_ids(magnitude: torch.Tensor) -> torch.Tensor:
    return (magnitude.float().contiguous().view(torch.int32) >> 16).flatten()


def global_drop_counts(
    family: ModelFamily,
    drop_fraction: Callable[[str], float],
    *,
    device: str | torch.device = "auto",
) -> dict[str, dict[str, int]]:
    """Per task and tensor, how many entries a global magnitude threshold drops.

    ``drop_fraction(task)`` is the fraction of the task's entries (over all tensors) to drop;
    ``round(fraction * total)`` entries are dropped, exactly.
    """
    from tadrop.task_vectors import iter_task_vectors

    tasks = family.task_names
    histograms = {task: torch.zeros(_BUCKETS, dtype=torch.int64) for task in tasks}
    total = 0
    for tensor in iter_task_vectors(family, device=device):
        total += tensor.task_vectors[0].numel()
        for index, task in enumerate(tasks):
            buckets = _bucket_ids(tensor.task_vectors[index].abs())
            histograms[task] += torch.bincount(buckets, minlength=_BUCKETS).cpu()
    targets = {task: int(round(drop_fraction(task) * total)) for task in tasks}
    threshold_bucket, below_bucket = {}, {}
    for task in tasks:
        cumulative = torch.cumsum(histograms[task], 0)
        target = targets[task]
        if target == 0:
            threshold_bucket[task], below_bucket[task] = -1, 0
            continue
        bucket = int(torch.searchsorted(cumulative, torch.tensor(target)))
        threshold_bucket[task] = bucket
        below_bucket[task] = int(cumulative[bucket - 1]) if bucket > 0 else 0
    counts: dict[str, dict[str, int]] = {task: {} for task in tasks}
    in_bucket: dict[str, list[tuple[str, torch.Tensor]]] = {task: [] for task in tasks}
    for tensor in iter_task_vectors(family, device=device, check_finite=False):
        for index, task in enumerate(tasks):
            if threshold_bucket[task] < 0:
                counts[task][tensor.name] = 0
                continue
            magnitude = tensor.task_vectors[index].abs().flatten()
            buckets = _bucket_ids(magnitude)
            counts[task][tensor.name] = int(torch.count_nonzero(buckets < threshold_bucket[task]))
            in_bucket[task].append(
                (tensor.name, magnitude[buckets == threshold_bucket[task]].cpu())
            )
    for task in tasks:
        if threshold_bucket[task] < 0:
            continue
        _take_in_bucket(counts[task], in_bucket[task], targets[task] - below_bucket[task])
    return counts


def _take_in_bucket(
    counts: dict[str, int], pieces: list[tuple[str, torch.Tensor]], n_take: int
) -> None:
    """Add to ``counts`` the ``n_take`` smallest in-bucket entries, ties in walk order."""
    if n_take <= 0 or not pieces:
        return
    values = torch.cat([piece for _, piece in pieces])
    owners = torch.cat(
        [
            torch.full((piece.numel(),), position, dtype=torch.int64)
            for position, (_, piece) in enumerate(pieces)
        ]
    )
    order = torch.sort(values, stable=True).indices[:n_take]
    taken = torch.bincount(owners[order], minlength=len(pieces))
    for position, (name, _) in enumerate(pieces):
        counts[name] += int(taken[position])

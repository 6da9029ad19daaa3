"""Whole-tensor routes: numpy selection by single-rank partitions on the CPU (values only, in
reused buffers; the |x| mask and its sums by one C pass where the kernel is built), a stable
torch sort elsewhere (CUDA)."""

from __future__ import annotations

import bisect

import numpy as np
import torch

from tadrop.quantiles import native, radix, settings
from tadrop.quantiles.buffers import SCRATCH
from tadrop.quantiles.common import (
    exact_bounds,
    interpolation_ranks,
    raise_for_nans,
    work_dtype,
)


class NumpySelection:
    """Order statistics of ``values`` (a private copy, reordered in place) by single-rank
    partitions: after selecting rank k, values[k] holds it, everything left of it is <= and
    everything right is >=, so the next rank is selected inside the segment between the two
    nearest ranks already placed. Magnitudes with many exact zeros are selected among the
    nonzero ones only (``zeros`` of them left out, see ``selection_of``)."""

    def __init__(self, values: np.ndarray, zeros: int = 0) -> None:
        self.values = values  # with ``zeros``: only the nonzero magnitudes
        self.zeros = zeros  # exact zeros left out of ``values``: ranks 0 .. zeros - 1
        self.placed: list[int] = []  # ranks already at their sorted position, ascending

    def value_at(self, rank: int) -> float:
        if rank < self.zeros:
            return 0.0
        rank -= self.zeros
        position = bisect.bisect_left(self.placed, rank)
        if position < len(self.placed) and self.placed[position] == rank:
            return float(self.values[rank])
        low = self.placed[position - 1] + 1 if position > 0 else 0
        high = self.placed[position] if position < len(self.placed) else len(self.values)
        segment = self.values[low:high]
        if rank == low:  # the smallest of its segment (e.g. the upper rank a quantile
            smallest = int(segment.argmin())  # interpolates to): swapped to the front
            segment[[0, smallest]] = segment[[smallest, 0]]
        else:
            segment.partition(rank - low)
        self.placed.insert(position, rank)
        return float(self.values[rank])


def sum_of_squares(values: np.ndarray) -> float:
    """sum(values^2) accumulated in float64 (numpy casts in small buffers: no float64 copy)."""
    return float(np.einsum("i,i->", values, values, dtype=np.float64))


def keep_ties_after_numpy(
    magnitudes: np.ndarray, value: float, n_skip: int, keep: np.ndarray, use_abs: bool = False
) -> None:
    """Set keep where magnitudes == value, except the first n_skip such entries (flat order);
    ``use_abs``: compare |magnitudes| (chunk by chunk). Chunked counts instead of all tie
    positions: ties can be most of a tensor (zeros)."""
    chunk = settings.TIE_CHUNK
    seen = 0
    for start in range(0, len(magnitudes), chunk):
        part = magnitudes[start : start + chunk]
        ties = (np.abs(part) if use_abs else part) == value
        if seen < n_skip:
            count = int(np.count_nonzero(ties))
            if seen + count <= n_skip:
                seen += count
                continue
            ties[: np.flatnonzero(ties)[n_skip - seen]] = False
            seen = n_skip
        part = keep[start : start + chunk]
        np.logical_or(part, ties, out=part)


def numpy_sorts(tensor: torch.Tensor) -> bool:
    """Whole-tensor routes of CPU tensors go through numpy (values only); CUDA: torch.sort."""
    return not tensor.is_cuda


def magnitudes_copy(flat: torch.Tensor, use_abs: bool) -> torch.Tensor:
    """A private copy of the values (or their magnitudes) in the working dtype; no NaNs."""
    work = flat.to(work_dtype(flat.dtype), copy=True)
    if use_abs:
        work.abs_()
    if bool(torch.isnan(work).any()):
        raise_for_nans(flat)
    return work


def from_full_sort(flat: torch.Tensor, use_abs: bool, ranks: list[int]) -> dict[int, float]:
    """{rank: value} of the given 0-based ranks, by sorting a copy of everything."""
    ordered = magnitudes_copy(flat, use_abs)
    if ordered.is_cuda:
        ordered = torch.sort(ordered).values
    else:
        ordered.numpy().sort()
    picked = ordered[torch.tensor(ranks, device=ordered.device)].double().cpu().tolist()
    return dict(zip(ranks, picked, strict=True))


def drop_by_numpy_select(flat, use_abs, drop_count_range, q_levels, keep_flat, with_sums=True):
    """drop_smallest on the CPU by numpy selection on a copy of the values (no indices):
    single-rank partitions, each inside the segment its neighbours left (a magnitude trim
    is one partition, ~4x faster than a sort); the threshold is the n_drop-th smallest and
    ties at it are dropped lowest flat index first."""
    n = flat.numel()
    work = flat.to(work_dtype(flat.dtype)).numpy()
    copy = SCRATCH.values(n, work.dtype, 1)
    fused = use_abs and fused_mask_supports(work)
    if fused:  # |x| straight into the copy; the mask pass reads the signed values
        magnitudes = np.abs(work, out=copy)
    else:
        magnitudes = np.abs(work, out=SCRATCH.values(n, work.dtype, 0)) if use_abs else work
    if np.isnan(np.max(magnitudes)):  # numpy's max propagates NaN
        raise_for_nans(flat)
    if not fused:
        np.copyto(copy, magnitudes)
    selection = selection_of(copy, use_abs, spare_slot=0 if fused else 2)
    q_ranks = sorted({k for q in q_levels for k in interpolation_ranks([q], n)})
    found = {k: selection.value_at(k) for k in q_ranks}
    exact = exact_bounds(q_levels, n, found)
    n_drop = drop_count_range(exact)[0]
    keep = keep_flat.numpy()
    if n_drop == 0:
        keep.fill(True)
        total = sum_of_squares(selection.values) if with_sums else 0.0
        return found, total, total
    threshold = selection.value_at(n_drop - 1)  # now values[:n_drop] are the n_drop smallest
    if fused:
        return (found, *cut_by_kernel(work, threshold, n_drop, keep))
    # values[:n_drop - zeros] are the smallest nonzero entries dropped (none if only zeros are)
    split = max(n_drop - selection.zeros, 0)
    dropped, kept = selection.values[:split], selection.values[split:]
    sumsq_dropped = sum_of_squares(dropped) if with_sums else 0.0
    sumsq_kept = sum_of_squares(kept) if with_sums else 0.0
    np.greater(magnitudes, threshold, out=keep)
    if split == 0 and selection.zeros > n_drop:  # the cut falls inside the left-out zeros
        keep_ties_after_numpy(magnitudes, threshold, n_drop, keep)
    elif len(kept) and np.min(kept) == threshold:  # some entries equal to it stay
        ties_dropped = int(np.count_nonzero(dropped == threshold))
        keep_ties_after_numpy(magnitudes, threshold, ties_dropped, keep)
    return found, sumsq_dropped + sumsq_kept, sumsq_kept


def selection_of(copy: np.ndarray, nonnegative: bool, spare_slot: int) -> NumpySelection:
    """The selection over ``copy`` (a private copy of the values), or, for magnitudes
    (``nonnegative``) with at least ``ZERO_SHARE_TO_COMPACT`` exact zeros, over their nonzero
    entries only, copied into the scratch slot ``spare_slot``: the zeros are the smallest ranks,
    and numpy's partition slows 25-30x when one value fills most of the array."""
    if not nonnegative or len(copy) == 0:
        return NumpySelection(copy)
    nonzero = int(np.count_nonzero(copy))
    zeros = len(copy) - nonzero
    if zeros < settings.ZERO_SHARE_TO_COMPACT * len(copy):
        return NumpySelection(copy)
    compact = SCRATCH.values(nonzero + 1, copy.dtype, spare_slot)[:nonzero]
    if copy.dtype == np.float32 and native.load() is not None:  # ~memory speed, in order
        native.load().compact_nonzero(copy.ctypes.data, len(copy), compact.ctypes.data)
    else:  # numpy's compress builds the nonzero indices first (2-3x slower)
        np.compress(copy != 0, copy, out=compact)
    return NumpySelection(compact, zeros)


def fused_mask_supports(work: np.ndarray) -> bool:
    """Whether ``cut_by_kernel`` can take these values (contiguous float32, C kernel built)."""
    return work.dtype == np.float32 and work.flags.c_contiguous and native.load() is not None


def cut_by_kernel(
    values: np.ndarray, threshold: float, n_drop: int, keep: np.ndarray
) -> tuple[float, float]:
    """The mask that drops the n_drop smallest |values| (float32, no NaN; the n_drop-th
    smallest is ``threshold``), with (sum of squares of all, of the kept) in float64: one C
    pass (``radix.abs_keep_mask``) for the mask, both sums and the counts below and at the
    threshold, replacing numpy's compare, two sums and tie count; ties at the threshold are
    dropped lowest flat index first, as the numpy mask drops them."""
    cut = radix.abs_keep_mask(torch.from_numpy(values), threshold, torch.from_numpy(keep))
    ties_dropped = n_drop - cut.below
    sumsq_kept = cut.sumsq_kept
    if cut.ties > ties_dropped:  # some entries equal to the threshold stay
        keep_ties_after_numpy(values, threshold, ties_dropped, keep, use_abs=True)
        sumsq_kept += (cut.ties - ties_dropped) * threshold * threshold
    return cut.sumsq_total, sumsq_kept


def drop_by_full_sort(flat, use_abs, drop_count_range, q_levels, keep_flat):
    """The whole-tensor route off the CPU: a stable sort of everything."""
    n = flat.numel()
    work = flat.to(work_dtype(flat.dtype))
    squares = work.double().square()
    magnitudes = magnitudes_copy(flat, use_abs)
    ordered, order = torch.sort(magnitudes, stable=True)
    q_ranks = {k for q in q_levels for k in interpolation_ranks([q], n)}
    found = {k: ordered[k].item() for k in q_ranks}
    exact = exact_bounds(q_levels, n, found)
    n_drop = drop_count_range(exact)[0]
    keep_flat.fill_(True)
    keep_flat[order[:n_drop]] = False
    return found, squares.sum().item(), squares[keep_flat].sum().item()

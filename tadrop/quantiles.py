"""Exact order statistics of tensors of any size and float dtype, on CPU and CUDA.

``quantiles`` equals ``torch.quantile(values.double().flatten(), q)`` (linear interpolation)
wherever that works, and keeps working far beyond its 2^24-element limit and for bf16/fp16.
``tadrop_keep_mask`` is the whole TADrop operation for one tensor in (about) one pass:

    d = Q_a(|tau|) / (Q_b(|tau|) + eps), clamped to [0, 1]         (paper, a=0.5, b=0.95)
    n_drop = round(d * n)          (Python's round: half to even)
    keep = all but the n_drop smallest |tau|; ties at the threshold drop the lowest flat index first
    scale = ||tau||_2 / (||tau * keep||_2 + eps)                   (norms in float64)

How the large-tensor path stays exact (measurements in shared/PERF-NOTES.md and
bench/RESULTS.md):
1. A fixed, seeded, stratified random sample (one random entry per stratum of n/m entries; never
   a strided one, which is biased when columns have different scales) gives, for each wanted
   rank k, a value bracket (lo, hi] that holds the k-th smallest entry with overwhelming
   probability.
2. One fused pass over the data counts the entries < lo and <= lo of each bracket, writes a byte
   mask of the entries inside any bracket (and, for TADrop, the keep mask "|tau| > hi of the
   drop bracket" plus float64 sums of squares).  On CPU the pass is a torch.compile'd kernel
   (compiled once per process and dtype, a few seconds; set TADROP_QUANTILES_COMPILE=0 to skip
   it); if compiling fails, and on CUDA, the same pass runs as chunked eager torch ops.
3. The few entries inside the brackets (about 1%) are gathered and sorted; each wanted rank is
   then an index into them, and the keep mask is fixed up for them alone (ties at the
   threshold in flat order).  The kept norm is the pass's sum above the bracket plus theirs.
4. If a count shows that a bracket missed its rank, the pass is repeated with a wider bracket
   and finally with a bracket between two values whose counts are known: the answer is exact
   whatever the data (ties, constants, adversarial orderings); only the time changes.

Tensors of up to 2^22 entries on the CPU (2^16 on CUDA) and requests for more than three
separate quantiles take a whole-tensor route instead: numpy selection (single-rank partitions)
of a copy of the values, then one comparison pass for the mask (CUDA: a full sort). The byte
mask is a reused per-thread buffer: ``release_buffers()`` frees it.
"""

from __future__ import annotations

import bisect
import functools
import math
import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

SAMPLE_SEED = 20250806
# Bracket half-widths, in standard deviations of the sample rank, for attempts 1 and 2; the
# third attempt uses a bracket between two values whose exact counts are known.
BRACKET_SIGMAS = (3.5, 14.0)
_DIRECT_MAX_NUMEL = 1 << 16  # at or below (CUDA): stable sort of everything
_SORT_MAX_NUMEL = 1 << 22  # at or below (CPU): numpy selection over the whole tensor
# Above it the compiled pass is 2-4x faster than the numpy route, once compiled (~3 s a
# process). Until then tensors up to _SORT_BEFORE_COMPILE_NUMEL take the numpy route, and the
# pass is compiled only when the entries handled so far would have paid for the compilation
# (a small merge never compiles).
_SORT_BEFORE_COMPILE_NUMEL = 1 << 25
_COMPILE_PAYS_OFF_NUMEL = 1 << 30
_SORT_WITHOUT_COMPILER_MAX_NUMEL = 1 << 27  # no compiler: the numpy route beats the eager pass
_FUSED_MIN_NUMEL = 1 << 18  # at or above (on CPU): the torch.compile'd pass
_FUSED_ROW = 1 << 15  # row length of the compiled pass (per-row int32 counts)
_EAGER_CHUNK = 1 << 22  # chunk length of the eager pass
_TIE_CHUNK = 1 << 20  # chunk length when the numpy route keeps ties in flat order
_SLOTS = 3  # brackets per pass: Q_a, Q_b and the drop threshold
_ATTEMPTS = len(BRACKET_SIGMAS) + 1


class QuantileInputError(ValueError):
    """A tensor or parameter that the quantile engine cannot work on; the message says why."""


# ----------------------------------------------------------------------------- public API


def quantiles(values: torch.Tensor, qs: Sequence[float] | float | torch.Tensor) -> torch.Tensor:
    """Exact quantiles (float64, one per q) of all entries, as ``torch.quantile`` (linear)."""
    flat = _flat_values(values, "values")
    return _quantiles_of(flat, _check_qs(qs), use_abs=False)


def abs_quantiles(tau: torch.Tensor, qs: Sequence[float] | float | torch.Tensor) -> torch.Tensor:
    """Exact quantiles of ``|tau|`` without materialising ``|tau|``."""
    flat = _flat_values(tau, "tau")
    return _quantiles_of(flat, _check_qs(qs), use_abs=True)


def kth_smallest(values: torch.Tensor, k: int) -> float:
    """The k-th smallest entry (k from 1 to numel, as ``torch.kthvalue``), exact, any size."""
    flat = _flat_values(values, "values")
    if not 1 <= k <= flat.numel():
        raise QuantileInputError(f"k={k} is outside [1, {flat.numel()}] (the number of entries).")
    return _Selector(flat, use_abs=False).order_statistics([k - 1])[k - 1]


def smallest_k_keep_mask(
    magnitude: torch.Tensor, n_drop: int, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Bool mask shaped like ``magnitude`` with exactly ``n_drop`` False entries: the n_drop
    smallest values; ties at the threshold are dropped lowest flat index first."""
    flat = _flat_values(magnitude, "magnitude")
    n = flat.numel()
    if not 0 <= n_drop <= n:
        raise QuantileInputError(f"n_drop={n_drop} is outside [0, {n}] (the number of entries).")
    keep = _keep_buffer(magnitude, out)
    selector = _Selector(flat, use_abs=False)
    selector.drop_smallest(lambda _q: (n_drop, n_drop), [], keep.view(-1), with_sums=False)
    return keep


def smallest_abs_keep_mask(
    tau: torch.Tensor, n_drop: int, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``smallest_k_keep_mask(tau.abs(), n_drop)`` without materialising ``tau.abs()``."""
    flat = _flat_values(tau, "tau")
    n = flat.numel()
    if not 0 <= n_drop <= n:
        raise QuantileInputError(f"n_drop={n_drop} is outside [0, {n}] (the number of entries).")
    keep = _keep_buffer(tau, out)
    _Selector(flat, use_abs=True).drop_smallest(
        lambda _q: (n_drop, n_drop), [], keep.view(-1), with_sums=False
    )
    return keep


@dataclass
class AbsDropResult:
    """What ``drop_smallest_abs`` found: the mask, the quantiles asked for and float64 sums."""

    keep_mask: torch.Tensor  # bool, shaped like tau
    quantiles: list[float]  # Q_q(|tau|) for each requested level, as torch.quantile
    sumsq_total: float  # sum of tau^2 over all entries
    sumsq_kept: float  # sum of tau^2 over the kept entries


def drop_smallest_abs(
    tau: torch.Tensor,
    drop_count_range: Callable[[list[tuple[float, float]]], tuple[int, int]],
    q_levels: Sequence[float],
    *,
    out: torch.Tensor | None = None,
) -> AbsDropResult:
    """Drop the n_drop smallest |tau|, where n_drop depends on quantiles of |tau| at
    ``q_levels``: ``drop_count_range(bounds)`` gets a [low, high] bound of each quantile (equal
    once it is known exactly) and returns the (least, most) n_drop they allow; it must be
    monotone. Ties at the threshold are dropped lowest flat index first, in about one pass.

    ``out``: an optional reused bool tensor shaped like ``tau`` (fresh large allocations are
    slow on some machines); it is returned as the mask.
    """
    flat = _flat_values(tau, "tau")
    levels = _check_qs(q_levels)
    keep = _keep_buffer(tau, out)
    selector = _Selector(flat, use_abs=True)
    found, sumsq_total, sumsq_kept = selector.drop_smallest(drop_count_range, levels, keep.view(-1))
    q_values = interpolate(levels, flat.numel(), found).tolist()
    return AbsDropResult(keep, q_values, sumsq_total, sumsq_kept)


def __getattr__(name: str):
    """``tadrop_keep_mask`` moved to ``tadrop.sparsify.tadrop_drop`` (TADrop's rule lives
    there; this engine knows no drop formula); the old import keeps working."""
    if name == "tadrop_keep_mask":
        from tadrop.sparsify.tadrop_drop import tadrop_keep_mask

        return tadrop_keep_mask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------ validation and helpers


def _flat_values(values: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(values, torch.Tensor):
        raise QuantileInputError(f"{what} must be a torch.Tensor, got {type(values).__name__}.")
    if not values.is_floating_point():
        raise QuantileInputError(
            f"{what} has dtype {values.dtype}; quantiles need a float tensor "
            "(float32, float16, bfloat16 or float64): convert it with .float()."
        )
    if values.numel() == 0:
        raise QuantileInputError(f"{what} is empty (shape {tuple(values.shape)}): no quantiles.")
    return values.detach().reshape(-1)


def _check_qs(qs: Sequence[float] | float | torch.Tensor) -> list[float]:
    if isinstance(qs, torch.Tensor):
        qs = qs.reshape(-1).tolist()
    q_list = [float(qs)] if isinstance(qs, (int, float)) else [float(q) for q in qs]
    if not q_list:
        raise QuantileInputError("qs is empty: give at least one quantile level in [0, 1].")
    bad = [q for q in q_list if not 0.0 <= q <= 1.0]
    if bad:
        raise QuantileInputError(f"quantile levels must lie in [0, 1]; got {bad}.")
    return q_list


def _keep_buffer(like: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:
        return torch.empty(like.shape, dtype=torch.bool, device=like.device)
    if out.dtype != torch.bool or out.shape != like.shape or out.device != like.device:
        raise QuantileInputError(
            f"out must be a bool tensor of shape {tuple(like.shape)} on {like.device}; got "
            f"{out.dtype} {tuple(out.shape)} on {out.device}."
        )
    if not out.is_contiguous():
        raise QuantileInputError("out must be contiguous (use torch.empty(shape, dtype=bool)).")
    return out


def interpolation_ranks(qs: Sequence[float], n: int) -> list[int]:
    """The order statistics (0-based ranks) that ``torch.quantile`` interpolates between."""
    ranks = torch.tensor(qs, dtype=torch.float64) * (n - 1)
    return sorted(set(ranks.long().tolist()) | set(ranks.ceil().long().tolist()))


def interpolate(
    qs: Sequence[float], n: int, value_at: Mapping[int, float] | np.ndarray
) -> torch.Tensor:
    """Quantiles at levels ``qs`` of n values from their order statistics (``value_at[k]``:
    the k-th smallest, 0-based; a dict of the needed ranks or all n sorted values): linear
    interpolation done exactly as torch.quantile does it, in float64."""
    ranks = torch.tensor(qs, dtype=torch.float64) * (n - 1)
    below = ranks.long()
    weights = ranks - below
    above = ranks.ceil().long()
    if isinstance(value_at, np.ndarray):
        values_below = torch.from_numpy(value_at[below.numpy()].astype(np.float64))
        values_above = torch.from_numpy(value_at[above.numpy()].astype(np.float64))
    else:
        values_below = torch.tensor([value_at[k] for k in below.tolist()], dtype=torch.float64)
        values_above = torch.tensor([value_at[k] for k in above.tolist()], dtype=torch.float64)
    return values_below.lerp(values_above, weights)


def _quantiles_of(flat: torch.Tensor, qs: list[float], *, use_abs: bool) -> torch.Tensor:
    n = flat.numel()
    ranks = interpolation_ranks(qs, n)
    value_at = _Selector(flat, use_abs=use_abs).order_statistics(ranks)
    return interpolate(qs, n, value_at)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; fp32/fp16/bf16 convert to float32 exactly."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _raise_for_nans(flat: torch.Tensor) -> None:
    nan_count = int(torch.isnan(flat).sum().item())
    if nan_count:
        raise QuantileInputError(
            f"the tensor holds {nan_count} NaN value(s) out of {flat.numel()}; quantiles of "
            "data with NaNs are undefined: clean the tensor (e.g. torch.nan_to_num) first."
        )


def _gather(flat: torch.Tensor, indices: torch.Tensor | np.ndarray) -> np.ndarray:
    """flat[indices] in the working dtype, as a new numpy array."""
    if isinstance(indices, np.ndarray):
        indices = torch.from_numpy(indices)
    picked = flat.index_select(0, indices.to(flat.device)).cpu()
    if picked.dtype == torch.bfloat16:  # widen by bit shifts: torch's bf16 copy is slow on CPU
        return (picked.view(torch.int16).numpy().view(np.uint16).astype(np.uint32) << 16).view(
            np.float32
        )
    if picked.dtype == torch.float16:
        return picked.numpy().astype(np.float32)
    return picked.numpy()


@functools.lru_cache(maxsize=8)
def _sample_indices(n: int, m: int) -> torch.Tensor:
    """m sorted indices, one uniformly random index in each of m equal strata of [0, n)."""
    rng = np.random.Generator(np.random.PCG64(SAMPLE_SEED))
    strata = np.arange(m + 1, dtype=np.int64) * n // m
    widths = np.diff(strata)
    offsets = np.minimum((rng.random(m) * widths).astype(np.int64), widths - 1)
    return torch.from_numpy(strata[:-1] + offsets)  # cached: callers must not modify it


def _sample_size(n: int) -> int:
    """Balances sampling (~10 ns an entry) against collecting (~40 ns an entry, ~11 n/sqrt(m)
    entries): minimum near m = (22 n)^(2/3), e.g. 2^19 at 16M, 2^20.5 at 64M."""
    return min(n, max(1 << 14, min(1 << 22, round((22 * n) ** (2 / 3)))))


class _NumpySelection:
    """Order statistics of ``values`` (a private copy, reordered in place) by single-rank
    partitions: after selecting rank k, values[k] holds it, everything left of it is <= and
    everything right is >=, so the next rank is selected inside the segment between the two
    nearest ranks already placed."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.placed: list[int] = []  # ranks already at their sorted position, ascending

    def value_at(self, rank: int) -> float:
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


def _sum_of_squares(values: np.ndarray) -> float:
    """sum(values^2) accumulated in float64 (numpy casts in small buffers: no float64 copy)."""
    return float(np.einsum("i,i->", values, values, dtype=np.float64))


def _keep_ties_after_numpy(
    magnitudes: np.ndarray, value: float, n_skip: int, keep: np.ndarray
) -> None:
    """Set keep where magnitudes == value, except the first n_skip such entries (flat order).
    Chunked counts instead of all tie positions: ties can be most of a tensor (zeros)."""
    chunk = _TIE_CHUNK
    seen = 0
    for start in range(0, len(magnitudes), chunk):
        ties = magnitudes[start : start + chunk] == value
        if seen < n_skip:
            count = int(np.count_nonzero(ties))
            if seen + count <= n_skip:
                seen += count
                continue
            ties[: np.flatnonzero(ties)[n_skip - seen]] = False
            seen = n_skip
        part = keep[start : start + chunk]
        np.logical_or(part, ties, out=part)


def _numpy_sorts(tensor: torch.Tensor) -> bool:
    """Whole-tensor routes of CPU tensors go through numpy (values only); CUDA: torch.sort."""
    return not tensor.is_cuda


# ------------------------------------------------------------------------ the selector


@dataclass
class _Collected:
    """The entries a pass found inside any bracket (a small fraction of all entries)."""

    values: np.ndarray  # (absolute) values in the working dtype, in flat order
    indices: np.ndarray  # their flat positions, ascending
    sorted_values: np.ndarray  # values, sorted


@dataclass
class _Slot:
    """One bracket (lo, hi] of a pass and what the pass found about it."""

    lo: float
    hi: float
    n_below: int  # entries < lo
    n_upto_lo: int  # entries <= lo
    collected: _Collected
    first: int  # position in collected.sorted_values of the first entry > lo
    stop: int  # position after the last entry <= hi

    def value_at(self, rank: int) -> float | None:
        """The entry of this 0-based rank, or None when the bracket missed it."""
        if rank < self.n_below:
            return None
        if rank < self.n_upto_lo:
            return self.lo
        position = self.first + rank - self.n_upto_lo
        return float(self.collected.sorted_values[position]) if position < self.stop else None


_EMPTY_SLOT = (math.inf, -math.inf)


class _Selector:
    """Exact order statistics of one flattened tensor (or of its absolute values)."""

    def __init__(self, flat: torch.Tensor, *, use_abs: bool) -> None:
        self.flat = flat
        self.use_abs = use_abs
        self.n = flat.numel()
        self.work_dtype = _work_dtype(flat.dtype)
        self.known: list[tuple[float, int]] = []  # (value, entries <= value) seen in passes
        self._sample: np.ndarray | None = None

    # -- order statistics --------------------------------------------------------------

    def _sorts_everything(self) -> bool:
        """Whole-tensor numpy route or the counting pass? numpy beats the pass on the CPU up
        to a few million entries (0.5 ms vs ~280 ms for the eager pass at 2^17.6 entries)."""
        n = self.n
        if self.flat.is_cuda:
            return n <= _DIRECT_MAX_NUMEL
        if n <= _SORT_MAX_NUMEL:
            return True
        if n < _FUSED_MIN_NUMEL or not _fused_enabled():
            return n <= _SORT_WITHOUT_COMPILER_MAX_NUMEL
        return n <= _SORT_BEFORE_COMPILE_NUMEL and not _compile_paid_off(n)

    def order_statistics(self, ranks: list[int]) -> dict[int, float]:
        ranks = sorted(set(ranks))
        if self._sorts_everything():
            return self._from_full_sort(ranks)
        groups = self._group_ranks(ranks)
        if len(groups) > _SLOTS:
            return self._from_full_sort(ranks)
        found: dict[int, float] = {}
        for attempt in range(_ATTEMPTS):
            pending = [g for g in groups if any(k not in found for k in g)]
            if not pending:
                break
            slots = self._run_pass([self._bracket(g[0], g[-1], attempt) for g in pending])
            for group, slot in zip(pending, slots, strict=True):
                found.update({k: v for k in group if (v := slot.value_at(k)) is not None})
        if len(found) < len(ranks):
            raise RuntimeError("quantile engine: brackets did not converge (a bug; please report).")
        return found

    def _group_ranks(self, ranks: list[int]) -> list[list[int]]:
        """Ranks whose first-attempt brackets overlap share one slot."""
        groups: list[list[int]] = []
        last_hi = -math.inf
        for rank in ranks:
            lo, hi = self._sample_bounds(rank, rank, BRACKET_SIGMAS[0])
            if groups and lo <= last_hi:
                groups[-1].append(rank)
                last_hi = max(last_hi, hi)
            else:
                groups.append([rank])
                last_hi = hi
        return groups

    def _from_full_sort(self, ranks: list[int]) -> dict[int, float]:
        ordered = self._magnitudes_copy()
        if ordered.is_cuda:
            ordered = torch.sort(ordered).values
        else:
            ordered.numpy().sort()
        picked = ordered[torch.tensor(ranks, device=ordered.device)].double().cpu().tolist()
        return dict(zip(ranks, picked, strict=True))

    def _magnitudes_copy(self) -> torch.Tensor:
        work = self.flat.to(self.work_dtype, copy=True)
        if self.use_abs:
            work.abs_()
        if bool(torch.isnan(work).any()):
            _raise_for_nans(self.flat)
        return work

    # -- dropping the smallest ---------------------------------------------------------

    def drop_smallest(
        self, drop_count_range, q_levels: list[float], keep_flat: torch.Tensor, with_sums=True
    ):
        """Write into keep_flat the mask that drops the n_drop smallest entries.

        ``drop_count_range(q_bounds)`` gives (least, most) n_drop from [low, high] bounds of the
        quantiles at ``q_levels``.  Returns ({rank: value} for those quantiles, sum of squares
        of all entries, sum of squares of the kept entries), both in float64 (the sort path
        leaves them 0.0 when ``with_sums`` is False: callers that only want the mask).
        """
        if self._sorts_everything():
            if _numpy_sorts(keep_flat):
                return self._drop_by_numpy_select(drop_count_range, q_levels, keep_flat, with_sums)
            return self._drop_by_full_sort(drop_count_range, q_levels, keep_flat)
        q_ranks = [interpolation_ranks([q], self.n) for q in q_levels]
        found: dict[int, float] = {}
        for attempt in range(_ATTEMPTS + 1):
            pending = [r for r in q_ranks if any(k not in found for k in r)]
            slots = [self._bracket(r[0], r[-1], attempt) for r in pending]
            q_bounds = [
                self._quantile_bounds(q, r, found, attempt)
                for q, r in zip(q_levels, q_ranks, strict=True)
            ]
            least, most = drop_count_range(q_bounds)
            drop_slot = None
            if most == 0 or least == self.n:
                keep_hi = -math.inf if most == 0 else math.inf  # keep all / drop all
            else:
                drop_slot = self._bracket(max(least - 1, 0), most - 1, attempt)
                slots.append(drop_slot)
                keep_hi = drop_slot[1]
            results, sumsq_total, sumsq_kept = self._run_pass(
                slots, keep_hi=keep_hi, keep_flat=keep_flat, with_sums=True
            )
            for ranks, slot in zip(pending, results, strict=False):  # + drop slot
                found.update({k: v for k in ranks if (v := slot.value_at(k)) is not None})
            if any(k not in found for r in q_ranks for k in r):
                continue
            exact = [(v, v) for v in (interpolate([q], self.n, found)[0].item() for q in q_levels)]
            n_drop = drop_count_range(exact)[0]
            if n_drop == 0:
                if keep_hi != -math.inf:
                    keep_flat.fill_(True)
                return found, sumsq_total, sumsq_total
            if n_drop == self.n:
                keep_flat.fill_(False)
                return found, sumsq_total, 0.0
            if drop_slot is None:
                continue
            kept_extra = self._fix_drop_slot(results[-1], n_drop, keep_flat)
            if kept_extra is not None:
                return found, sumsq_total, sumsq_kept + kept_extra
        raise RuntimeError("quantile engine: brackets did not converge (a bug; please report).")

    def _fix_drop_slot(self, slot: _Slot, n_drop: int, keep_flat: torch.Tensor) -> float | None:
        """Decide the collected entries; return the sum of squares kept inside the bracket.

        The pass kept exactly the entries above the bracket; every collected entry gets
        "value > threshold" (right for all of them), then ties at the threshold are kept from
        the (n_drop - entries below it)-th on, in flat order.
        """
        threshold = slot.value_at(n_drop - 1)
        if threshold is None:
            return None
        values, indices = slot.collected.values, slot.collected.indices
        keep_collected = values > threshold
        ties_total = slot.n_upto_lo - slot.n_below  # entries equal to lo
        if threshold != slot.lo:  # all ties are collected
            below = slot.n_upto_lo + int(
                np.searchsorted(slot.collected.sorted_values[slot.first :], threshold)
            )
            tie_positions = np.flatnonzero(values == threshold)
            keep_collected[tie_positions[n_drop - below :]] = True
            ties_total = 0
        if keep_flat.is_cuda:
            positions = torch.from_numpy(indices).to(keep_flat.device)
            keep_flat.index_put_(
                (positions,), torch.from_numpy(keep_collected).to(keep_flat.device)
            )
        else:
            keep_flat.numpy()[indices] = keep_collected
        ties_kept = 0
        if threshold == slot.lo:  # ties at lo were not collected: find them in flat order
            ties_kept = ties_total - (n_drop - slot.n_below)
            self._keep_ties_after(threshold, n_drop - slot.n_below, keep_flat)
        inside = values[keep_collected & (values <= slot.hi)].astype(np.float64)
        return ties_kept * float(threshold) ** 2 + float(np.dot(inside, inside))

    def _keep_ties_after(self, value: float, n_skip: int, keep_flat: torch.Tensor) -> None:
        """Set keep for the entries equal to ``value`` after the first ``n_skip`` (flat order)."""
        seen = 0
        for start in range(0, self.n, _EAGER_CHUNK):
            stop = min(start + _EAGER_CHUNK, self.n)
            ties = self._magnitude_chunk(start, stop) == value
            if seen < n_skip:
                count = int(ties.sum().item())
                if seen + count <= n_skip:
                    seen += count
                    continue
                first_kept = int(ties.nonzero()[n_skip - seen, 0].item())
                ties[:first_kept] = False
                seen = n_skip
            keep_flat[start:stop] |= ties

    def _drop_by_numpy_select(self, drop_count_range, q_levels, keep_flat, with_sums=True):
        """drop_smallest on the CPU by numpy selection on a copy of the values (no indices):
        single-rank partitions, each inside the segment its neighbours left (a magnitude trim
        is one partition, ~4x faster than a sort); the threshold is the n_drop-th smallest and
        ties at it are dropped lowest flat index first."""
        work = self.flat.to(self.work_dtype).numpy()
        magnitudes = (
            np.abs(work, out=_scratch_values(self.n, work.dtype, 0)) if self.use_abs else work
        )
        if np.isnan(np.max(magnitudes)):  # numpy's max propagates NaN
            _raise_for_nans(self.flat)
        copy = _scratch_values(self.n, work.dtype, 1)
        np.copyto(copy, magnitudes)
        selection = _NumpySelection(copy)
        q_ranks = sorted({k for q in q_levels for k in interpolation_ranks([q], self.n)})
        found = {k: selection.value_at(k) for k in q_ranks}
        exact = [(v, v) for v in (interpolate([q], self.n, found)[0].item() for q in q_levels)]
        n_drop = drop_count_range(exact)[0]
        keep = keep_flat.numpy()
        if n_drop == 0:
            keep.fill(True)
            total = _sum_of_squares(selection.values) if with_sums else 0.0
            return found, total, total
        threshold = selection.value_at(n_drop - 1)  # now values[:n_drop] are the n_drop smallest
        dropped, kept = selection.values[:n_drop], selection.values[n_drop:]
        sumsq_dropped = _sum_of_squares(dropped) if with_sums else 0.0
        sumsq_kept = _sum_of_squares(kept) if with_sums else 0.0
        np.greater(magnitudes, threshold, out=keep)
        if len(kept) and np.min(kept) == threshold:  # some entries equal to it stay
            ties_dropped = int(np.count_nonzero(dropped == threshold))
            _keep_ties_after_numpy(magnitudes, threshold, ties_dropped, keep)
        return found, sumsq_dropped + sumsq_kept, sumsq_kept

    def _drop_by_full_sort(self, drop_count_range, q_levels, keep_flat):
        work = self.flat.to(self.work_dtype)
        squares = work.double().square()
        magnitudes = self._magnitudes_copy()
        ordered, order = torch.sort(magnitudes, stable=True)
        q_ranks = {k for q in q_levels for k in interpolation_ranks([q], self.n)}
        found = {k: ordered[k].item() for k in q_ranks}
        exact = [(v, v) for v in (interpolate([q], self.n, found)[0].item() for q in q_levels)]
        n_drop = drop_count_range(exact)[0]
        keep_flat.fill_(True)
        keep_flat[order[:n_drop]] = False
        return found, squares.sum().item(), squares[keep_flat].sum().item()

    # -- brackets ---------------------------------------------------------------------

    def _sample_sorted(self) -> np.ndarray:
        if self._sample is None:
            sample = _gather(self.flat, _sample_indices(self.n, _sample_size(self.n)))
            if self.use_abs:
                np.abs(sample, out=sample)
            if np.isnan(sample).any():
                _raise_for_nans(self.flat)
            self._sample = np.sort(sample)
        return self._sample

    def _sample_bounds(self, k_min: int, k_max: int, sigmas: float) -> tuple[float, float]:
        """Sample values that fall below rank k_min and above rank k_max with high probability."""
        sample = self._sample_sorted()
        m, n = len(sample), self.n

        def spread(rank: int) -> float:  # standard deviation of a sample rank, plus rounding
            p = (rank + 0.5) / n
            return sigmas * math.sqrt(m * p * (1.0 - p) + 1.0) + 1.0

        j_lo = math.floor(k_min * m / n - spread(k_min))
        j_hi = math.ceil((k_max + 1) * m / n + spread(k_max))
        lo = float(sample[j_lo]) if j_lo >= 0 else -math.inf
        hi = float(sample[j_hi]) if j_hi < m else math.inf
        return lo, hi

    def _known_bounds(self, k_min: int, k_max: int) -> tuple[float, float]:
        """(L, H]: the tightest bracket of ranks k_min..k_max from exact counts seen so far."""
        low = max((v for v, upto in self.known if upto <= k_min), default=-math.inf)
        high = min((v for v, upto in self.known if upto > k_max), default=math.inf)
        return low, high

    def _bracket(self, k_min: int, k_max: int, attempt: int) -> tuple[float, float]:
        low, high = self._known_bounds(k_min, k_max)
        if attempt >= len(BRACKET_SIGMAS):
            return low, high
        lo, hi = self._sample_bounds(k_min, k_max, BRACKET_SIGMAS[attempt])
        lo, hi = max(lo, low), min(hi, high)
        return (lo, hi) if lo <= hi else (low, high)

    def _quantile_bounds(self, q, ranks, found, attempt) -> tuple[float, float]:
        """[low, high] holding the quantile at level q: exact once its ranks are known."""
        if all(k in found for k in ranks):
            value = interpolate([q], self.n, found)[0].item()
            return value, value
        known_low, known_high = self._known_bounds(ranks[0], ranks[-1])
        if attempt >= len(BRACKET_SIGMAS):
            return known_low, known_high
        # two quantiles err together: each gets sigmas / sqrt(2) for the drop-rate range
        low, high = self._sample_bounds(ranks[0], ranks[-1], BRACKET_SIGMAS[attempt] / math.sqrt(2))
        low, high = max(low, known_low), min(high, known_high)
        return (low, high) if low <= high else (known_low, known_high)

    # -- the pass over the data --------------------------------------------------------

    def _magnitude_chunk(self, start: int, stop: int) -> torch.Tensor:
        work = self.flat[start:stop].to(self.work_dtype)
        return work.abs() if self.use_abs else work

    def _run_pass(self, brackets, *, keep_hi=None, keep_flat=None, with_sums=False):
        """One pass: counts and collected entries of each bracket; optionally the keep mask."""
        padded = list(brackets) + [_EMPTY_SLOT] * (_SLOTS - len(brackets))
        bounds_list = [lo for lo, _ in padded] + [hi for _, hi in padded]
        bounds_list.append(math.inf if keep_hi is None else keep_hi)
        bounds = torch.tensor(bounds_list, dtype=self.work_dtype, device=self.flat.device)
        raw = _fused_or_eager_pass(self.flat, bounds, self.use_abs, keep_flat)
        if math.isnan(raw.sumsq_total):
            _raise_for_nans(self.flat)
        collected = _Collected(raw.values, raw.indices, np.sort(raw.values))
        slots = []
        for j, (lo, hi) in enumerate(brackets):
            first = int(np.searchsorted(collected.sorted_values, lo, side="right"))
            stop = int(np.searchsorted(collected.sorted_values, hi, side="right"))
            slot = _Slot(lo, hi, raw.counts[j], raw.counts[_SLOTS + j], collected, first, stop)
            if lo <= hi:  # a real bracket: its bounds now have exact counts
                self.known.append((lo, slot.n_upto_lo))
                self.known.append((hi, slot.n_upto_lo + stop - first))
            slots.append(slot)
        if with_sums:
            return slots, raw.sumsq_total, raw.sumsq_kept
        return slots


# ------------------------------------------------------------- pass implementations


@dataclass
class _RawPass:
    counts: list[int]  # entries < lo_j (j < _SLOTS), then entries <= lo_j
    indices: np.ndarray  # flat positions inside any bracket, ascending (int64)
    values: np.ndarray  # their (absolute) values, working dtype
    sumsq_total: float  # sum of squares of all entries, float64
    sumsq_kept: float  # sum of squares of entries above the keep bound, float64


def _fused_or_eager_pass(flat, bounds, use_abs, keep_flat) -> _RawPass:
    n = flat.numel()
    body = n - n % _FUSED_ROW
    if flat.is_cuda or n < _FUSED_MIN_NUMEL or not _fused_enabled():
        return _eager_pass(flat, bounds, use_abs, keep_flat, 0, n)
    try:
        body_pass = _fused_body_pass(flat[:body], bounds, use_abs, keep_flat)
    except Exception as error:  # no compiler, unsupported platform, ...: stay exact, go eager
        _disable_fused(error)
        return _eager_pass(flat, bounds, use_abs, keep_flat, 0, n)
    if body == n:
        return body_pass
    return _merge_passes(body_pass, _eager_pass(flat, bounds, use_abs, keep_flat, body, n))


def _merge_passes(first: _RawPass, second: _RawPass) -> _RawPass:
    return _RawPass(
        counts=[a + b for a, b in zip(first.counts, second.counts, strict=True)],
        indices=np.concatenate([first.indices, second.indices]),
        values=np.concatenate([first.values, second.values]),
        sumsq_total=first.sumsq_total + second.sumsq_total,
        sumsq_kept=first.sumsq_kept + second.sumsq_kept,
    )


def _eager_pass(flat, bounds, use_abs, keep_flat, start, stop) -> _RawPass:
    """The pass as chunked torch ops (any device): the reference for the fused kernel."""
    lows, highs, keep_hi = bounds[:_SLOTS], bounds[_SLOTS : 2 * _SLOTS], bounds[2 * _SLOTS]
    device = flat.device
    counts = torch.zeros(2 * _SLOTS, dtype=torch.long, device=device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    index_parts, value_parts = [], []
    chunk = _EAGER_CHUNK * (16 if flat.is_cuda else 1)  # fewer launches on a GPU
    for chunk_start in range(start, stop, chunk):
        chunk_stop = min(chunk_start + chunk, stop)
        work = flat[chunk_start:chunk_stop].to(bounds.dtype)
        magnitude = work.abs() if use_abs else work
        inside = torch.zeros(magnitude.shape, dtype=torch.bool, device=device)
        for j in range(_SLOTS):
            counts[j] += torch.count_nonzero(magnitude < lows[j])
            counts[_SLOTS + j] += torch.count_nonzero(magnitude <= lows[j])
            inside |= (magnitude > lows[j]) & (magnitude <= highs[j])
        positions = inside.nonzero().squeeze(1)
        index_parts.append(positions + chunk_start)
        value_parts.append(magnitude[positions])
        squares = work.double().square()
        sums[0] += squares.sum()
        if keep_flat is not None:
            keep = magnitude > keep_hi
            keep_flat[chunk_start:chunk_stop] = keep
            sums[1] += torch.where(keep, squares, 0.0).sum()
    sumsq_total, sumsq_kept = sums.tolist()
    return _RawPass(
        counts=counts.tolist(),
        indices=torch.cat(index_parts).cpu().numpy(),
        values=torch.cat(value_parts).cpu().numpy(),
        sumsq_total=sumsq_total,
        sumsq_kept=sumsq_kept,
    )


def _fused_body_pass(body, bounds, use_abs, keep_flat) -> _RawPass:
    """The pass as one torch.compile'd CPU kernel over rows of _FUSED_ROW entries."""
    if body.dtype in _HALF_DTYPES and body.storage_offset() % 2:
        body = body.clone()  # the int32 view of pairs needs 4-byte alignment
    rows = body.view(-1, _FUSED_ROW)  # (R, C)
    # 16-bit floats: the reductions read pairs as int32 words; on 16-bit loads inductor picks
    # 32-lane vectors, whose many accumulators spill (3x slower here)
    words = rows.view(torch.int32) if body.dtype in _HALF_DTYPES else None  # (R, C/2)
    inside_bytes = _scratch_bytes(body.numel())
    keep_bytes = None
    if keep_flat is not None:
        keep_bytes = keep_flat[: body.numel()].view(torch.uint8).view(rows.shape)
    kernel = _compiled_kernel(use_abs, keep_flat is not None)
    outputs = kernel(rows, words, bounds, inside_bytes.view(rows.shape), keep_bytes)
    # small per-row results: numpy sums them without waking torch's thread pool
    counts = [int(row_counts.numpy().sum(dtype=np.int64)) for row_counts in outputs[: 2 * _SLOTS]]
    sumsq_total = float(outputs[2 * _SLOTS].numpy().sum())
    sumsq_kept = float(outputs[2 * _SLOTS + 1].numpy().sum()) if keep_flat is not None else 0.0
    indices = np.flatnonzero(inside_bytes.numpy().view(np.bool_))
    values = _gather(body, indices)
    if use_abs:
        np.abs(values, out=values)
    return _RawPass(counts, indices, values, sumsq_total, sumsq_kept)


_HALF_DTYPES = (torch.bfloat16, torch.float16)


def _half_bits_to_float(bits: torch.Tensor) -> torch.Tensor:
    """IEEE fp16 bit patterns (int32 holding 16 bits) -> exact float32, inside the kernel.

    Shifted into float32 position, the exponent and mantissa read as a float 2^112 times too
    small, subnormals included; exponent 31 (inf, NaN) lands at 2^16 and above.
    """
    scaled = ((bits & 0x7FFF) << 13).view(torch.float32) * 2.0**112
    special = torch.where(scaled == 65536.0, math.inf, math.nan)
    magnitude = torch.where(scaled >= 65536.0, special, scaled)
    return torch.where((bits & 0x8000) != 0, -magnitude, magnitude)


def _unpack_halves(words: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
    """The two 16-bit floats in each int32 word (little-endian: even entry low), as float32."""
    if dtype == torch.bfloat16:  # bf16 is the top half of a float32
        return [(words << 16).view(torch.float32), (words & -65536).view(torch.float32)]
    return [_half_bits_to_float(words & 0xFFFF), _half_bits_to_float((words >> 16) & 0xFFFF)]


def _make_kernel(use_abs: bool, with_keep: bool):
    def pass_kernel(rows, words, bounds, inside_out, keep_out):
        # per-row reductions: counts below / at-or-below each lo, float64 sums of squares
        parts = [rows.to(bounds.dtype)] if words is None else _unpack_halves(words, rows.dtype)
        below = [0] * _SLOTS
        upto = [0] * _SLOTS
        total = kept = 0
        for work in parts:
            magnitude = work.abs() if use_abs else work
            for j in range(_SLOTS):
                below[j] = below[j] + (magnitude < bounds[j]).to(torch.int32)
                upto[j] = upto[j] + (magnitude <= bounds[j]).to(torch.int32)
            squares = work.to(torch.float64) * work.to(torch.float64)
            total = total + squares
            if with_keep:
                kept = kept + torch.where(magnitude > bounds[2 * _SLOTS], squares, 0.0)
        counts = [c.sum(1, dtype=torch.int32) for c in below + upto]
        sums = [total.sum(1)] + ([kept.sum(1)] if with_keep else [])
        # per-entry bytes: bool stores vectorize badly in inductor; uint8 through float32 is fast
        work = rows.to(bounds.dtype)
        magnitude = work.abs() if use_abs else work
        inside = None
        for j in range(_SLOTS):
            in_slot = (magnitude > bounds[j]) & (magnitude <= bounds[_SLOTS + j])
            inside = in_slot if inside is None else inside | in_slot
        inside_out.copy_(torch.where(inside, 1.0, 0.0).to(torch.uint8))
        if with_keep:
            keep_out.copy_(torch.where(magnitude > bounds[2 * _SLOTS], 1.0, 0.0).to(torch.uint8))
        return [*counts, *sums]

    return pass_kernel


_compile_lock = threading.Lock()
_compiled: dict[tuple[bool, bool], object] = {}
_sorted_entries = [0]  # entries sorted while no pass was compiled (see _compile_paid_off)
_fused_state = {"enabled": os.environ.get("TADROP_QUANTILES_COMPILE", "1") != "0"}
_scratch = threading.local()


def _fused_enabled() -> bool:
    return _fused_state["enabled"]


def _disable_fused(error: Exception) -> None:
    _fused_state["enabled"] = False
    warnings.warn(
        f"tadrop.quantiles: the compiled pass failed ({type(error).__name__}: {error}); "
        "using chunked eager torch ops (exact, slower).",
        RuntimeWarning,
        stacklevel=3,
    )


def _compile_paid_off(numel: int) -> bool:
    """Count ``numel`` more entries sorted instead of counted; True once the compiled pass is
    (or should be) in use: it exists, or sorting has cost about what compiling it would."""
    with _compile_lock:
        if _compiled:
            return True
        _sorted_entries[0] += numel
        return _sorted_entries[0] > _COMPILE_PAYS_OFF_NUMEL


def _compiled_kernel(use_abs: bool, with_keep: bool):
    with _compile_lock:
        key = (use_abs, with_keep)
        if key not in _compiled:
            _compiled[key] = torch.compile(_make_kernel(use_abs, with_keep), dynamic=True)
        return _compiled[key]


def _scratch_bytes(numel: int) -> torch.Tensor:
    """A reused per-thread uint8 buffer (fresh large allocations are slow)."""
    buffer = getattr(_scratch, "bytes", None)
    if buffer is None or buffer.numel() < numel:
        buffer = torch.empty(numel, dtype=torch.uint8)
        _scratch.bytes = buffer
    return buffer[:numel]


def _scratch_values(numel: int, dtype: np.dtype, slot: int) -> np.ndarray:
    """Reused per-thread numpy buffers (slots 0 and 1) for the numpy route: numpy's fresh
    allocations fault in every page (~1.5 ms for 6 MB here, as long as the work itself).
    Only up to _SORT_MAX_NUMEL entries are kept (at most 2 x 16 MB a thread)."""
    if numel > _SORT_MAX_NUMEL:
        return np.empty(numel, dtype=dtype)
    buffers = getattr(_scratch, "values", None)
    if buffers is None:
        buffers = _scratch.values = {}
    key = (slot, np.dtype(dtype).str)
    buffer = buffers.get(key)
    if buffer is None or buffer.size < numel:
        buffer = buffers[key] = torch.empty(numel, dtype=_TORCH_OF[np.dtype(dtype).str]).numpy()
    return buffer[:numel]


_TORCH_OF = {np.dtype(np.float32).str: torch.float32, np.dtype(np.float64).str: torch.float64}


def release_buffers() -> None:
    """Free this thread's reused scratch buffers (they grow to the largest tensor seen)."""
    _scratch.bytes = None
    _scratch.values = None

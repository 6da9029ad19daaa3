"""Many exact order statistics of |x| plus float64 power sums, by selection on bit patterns.

For non-negative floats the bit pattern orders like the value, so a histogram of the high
bits of |x| tells which bucket holds each wanted rank. bf16: one 65536-bin histogram of all
16 bits is one bin per value: one pass that only counts answers every rank, and the power
sums are float64 sums over its bins (each distinct value times its count). fp32 (or a task
vector read from two tensors): pass 1 counts buckets of the top 16 bits of |x| and
accumulates the power sums of (x - shift), zeros and NaNs; pass 2 counts the next 6 bits
inside the buckets holding a rank; pass 3 counts the last 9 bits inside the sub-buckets
holding a rank. Every rank is then read from counts at full resolution: nothing is collected
or sorted, so ties and spikes (a quantised task vector) cost nothing more. Ranks among the
exact zeros are known after pass 1. Passes run as a C kernel (``native.py``) in per-thread
parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tadrop.quantiles import native

_KINDS = (torch.float32, torch.bfloat16)
_COPIES = 2  # histograms per part in pass 1 (COPIES in the C source)
# Pass 2 splits a wanted bucket into 2^SUB_BITS sub-buckets (the next bits of an fp32): its
# histogram (up to ~1000 buckets x 64 x 4 bytes a thread) stays in L2, and pass 3 collects
# the sub-buckets of ~1000 ranks: about 1% of the entries.
SUB_BITS = 6
# At or below this many entries in the buckets holding a rank (after pass 1), they are collected
# and sorted (~3 ms for 1M) instead of refined by pass 2 (~7 ms on a 1M-entry tensor); more are
# refined, as a pass costs less than sorting them.
COLLECT_MAX = 1 << 20
# After pass 2, the sub-buckets holding a rank are collected and sorted up to this many entries
# (1.6M on a 256M-entry tensor: 704 instead of 836 ms) instead of counted by pass 3, whose
# 512-bin histograms per rank cost ~15 ms to clear and reduce besides its pass.
SUB_COLLECT_MAX = 1 << 23


@dataclass
class PowerSums:
    """Float64 sums over all entries: of d, d^2, d^3, d^4 with d = x - shift, of |x| and x^2."""

    shift: float
    sums: np.ndarray  # (6,)
    zeros: int
    nans: int


def supports(tensor: torch.Tensor) -> bool:
    """Whether the radix route handles this tensor (CPU fp32/bf16, with a compiled kernel)."""
    return tensor.device.type == "cpu" and tensor.dtype in _KINDS and native.load() is not None


_PAIR_INPUTS = {torch.float32: native.FP32_PAIR, torch.bfloat16: native.BF16_PAIR}


def supports_pair(task: torch.Tensor, base: torch.Tensor) -> bool:
    """Whether the passes can read tau = task - base from the two tensors themselves (CPU,
    one dtype, fp32 or bf16, same number of entries, with a compiled kernel)."""
    return (
        task.device.type == base.device.type == "cpu"
        and task.dtype == base.dtype
        and task.dtype in _PAIR_INPUTS
        and task.numel() == base.numel()
        and native.load(_PAIR_INPUTS[task.dtype]) is not None
    )


def _parts() -> int:
    return max(1, torch.get_num_threads())


@dataclass
class _Entries:
    """What the fp32 passes read: one tensor, or a task and a base tensor (tau = a - b)."""

    library: object
    a: int  # data pointers
    b: int | None
    n: int


def abs_order_statistics(
    flat: torch.Tensor, ranks: np.ndarray, base: torch.Tensor | None = None
) -> tuple[np.ndarray, PowerSums]:
    """(|x| at each 0-based rank in ``ranks`` (sorted, unique int64), as float32; power sums).

    ``flat``: a contiguous 1-d CPU fp32 or bf16 tensor (see ``supports``). With ``base`` (same
    dtype and length, see ``supports_pair``) x is the task vector flat - base in float32,
    computed inside the passes. NaNs are counted, not ranked: callers raise when ``nans`` is
    not 0."""
    parts = _parts()
    if base is None:
        shift = float(flat[0])  # sums of x - x[0]: exact zeros for a constant tensor
        if flat.dtype == torch.bfloat16:
            return _bf16_order_statistics(native.load(), flat, ranks, parts, shift)
        entries = _Entries(native.load(), flat.data_ptr(), None, flat.numel())
    else:
        shift = float(flat[:1].float() - base[:1].float())  # tau[0], as the passes compute it
        library = native.load(_PAIR_INPUTS[flat.dtype])
        entries = _Entries(library, flat.data_ptr(), base.data_ptr(), flat.numel())
    return _three_passes(entries, ranks, parts, shift)


def _power(shift: float, sums: np.ndarray, counts: np.ndarray) -> PowerSums:
    zeros, nans = (int(value) for value in counts.sum(axis=0))
    return PowerSums(shift, sums.sum(axis=0), zeros, nans)


def _bf16_order_statistics(library, flat, ranks, parts, shift):
    """One pass: the histogram of all 65536 bf16 bit patterns; the power sums are taken
    over its bins (one value each) in float64, the ranks read from its cumulative counts."""
    hist = np.empty((parts, _COPIES, 1 << 16), dtype=np.uint32)
    library.bf16_histogram(flat.data_ptr(), flat.numel(), parts, hist.ctypes.data)
    counts = hist.sum(axis=(0, 1), dtype=np.int64)  # (65536,) by bit pattern
    magnitude_bits = np.arange(1 << 16, dtype=np.uint32) & 0x7FFF
    is_nan = magnitude_bits > 0x7F80
    nans = int(counts[is_nan].sum())
    zeros = int(counts[magnitude_bits == 0].sum())
    present = (counts > 0) & ~is_nan
    values = (np.flatnonzero(present).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    weights = counts[present].astype(np.float64)
    d = values - shift
    d2 = d * d
    sums = np.array(
        [
            weights @ d,
            weights @ d2,
            weights @ (d2 * d),
            weights @ (d2 * d2),
            weights @ np.abs(values),
            weights @ (values * values),
        ]
    )
    power = PowerSums(shift, sums, zeros, nans)
    if nans:
        return np.full(len(ranks), np.nan, dtype=np.float32), power
    by_magnitude = counts[: 1 << 15] + counts[1 << 15 :]  # one bin per |x| value
    buckets = np.searchsorted(np.cumsum(by_magnitude), ranks, side="right")
    return (buckets.astype(np.uint32) << 16).view(np.float32), power


def _three_passes(entries: _Entries, ranks, parts, shift):
    """fp32: pass 1 (power sums and a histogram of the top 16 bits of |x|), then passes 2
    and 3 (``_refine``) inside the buckets holding the ranks."""
    hist = np.empty((parts, _COPIES, 65536), dtype=np.uint32)
    sums = np.zeros((parts, 6), dtype=np.float64)
    counts = np.zeros((parts, 2), dtype=np.int64)
    entries.library.radix_pass1(
        entries.a, entries.b, entries.n, shift, parts,
        hist.ctypes.data, sums.ctypes.data, counts.ctypes.data,
    )  # fmt: skip
    power = _power(shift, sums, counts)
    if power.nans:
        return np.full(len(ranks), np.nan, dtype=np.float32), power
    # the smallest ranks are exact zeros, counted by pass 1: they are never collected (a task
    # vector can be mostly zeros; collecting and sorting them all cost seconds and ~1 GB)
    values = np.zeros(len(ranks), dtype=np.float32)
    nonzero = ranks >= power.zeros
    if nonzero.any():
        per_part = hist.sum(axis=1, dtype=np.int64)  # (parts, buckets)
        cumulative = np.cumsum(per_part.sum(axis=0))  # entries in buckets <= b
        buckets = np.searchsorted(cumulative, ranks[nonzero], side="right")
        within = ranks[nonzero] - np.where(buckets > 0, cumulative[buckets - 1], 0)
        values[nonzero] = _refine(entries, parts, per_part, cumulative, buckets, within)
    return values, power


def _refine(entries: _Entries, parts, per_part, cumulative, buckets, within) -> np.ndarray:
    """The value of rank number ``within`` (0-based) of each ``buckets`` entry: when the
    buckets holding a rank hold at most COLLECT_MAX entries, by collecting and sorting them;
    otherwise pass 2 (a histogram of the next SUB_BITS bits inside them), then pass 3 inside
    the sub-buckets holding a rank (collected, or counted: ``_lowest_bits``).
    ``per_part``: pass 1's (parts, 65536) bucket counts."""
    wanted = np.unique(buckets)  # ascending: slot order is value order
    slots = len(wanted)
    slot_of = np.full(65536, slots, dtype=np.int16)  # 128 KB: stays in L2 beside the counts
    slot_of[wanted] = np.arange(slots, dtype=np.int16)
    bucket_sizes = np.diff(cumulative, prepend=0)[wanted]
    slot_start = np.cumsum(bucket_sizes) - bucket_sizes  # entries of earlier wanted buckets
    if bucket_sizes.sum() <= COLLECT_MAX:  # every entry of the wanted buckets, in slot order
        flagged = Flagged(slots, 0, np.arange(slots), bucket_sizes, per_part[:, wanted].sum(1))
        return _collected(entries, parts, slot_of, flagged, slot_of[buckets], within)
    width = 1 << SUB_BITS
    hist2 = np.empty((parts, slots + 1, width), dtype=np.uint32)
    entries.library.radix_pass2(
        entries.a, entries.b, entries.n, parts, slot_of.ctypes.data, slots, SUB_BITS,
        hist2.ctypes.data,
    )  # fmt: skip
    per_part2 = hist2[:, :slots].astype(np.int64).reshape(parts, -1)  # flat slot*width+sub
    counts = per_part2.sum(axis=0)
    running = np.cumsum(counts)
    position = slot_start[slot_of[buckets]] + within  # among entries of wanted buckets
    sub = np.searchsorted(running, position, side="right")  # flat sub-bucket of each rank
    within_sub = position - np.where(sub > 0, running[sub - 1], 0)
    ids = np.unique(sub)  # ascending
    flagged = Flagged(slots, SUB_BITS, ids, counts[ids], per_part2[:, ids].sum(axis=1))
    if flagged.per_part.sum() <= SUB_COLLECT_MAX:
        return _collected(entries, parts, slot_of, flagged, sub, within_sub)
    return _lowest_bits(entries, parts, wanted, slot_of, sub, within_sub)


@dataclass
class Flagged:
    """Groups of entries a pass collects: ids (slot << sub_bits | sub-bucket, ascending), how
    many entries each holds and how many each part holds in all."""

    slots: int
    sub_bits: int
    ids: np.ndarray
    sizes: np.ndarray
    per_part: np.ndarray

    def bitmap(self) -> np.ndarray:
        return _bitmap(self.slots, self.sub_bits, self.ids)


def _bitmap(slots: int, sub_bits: int, ids: np.ndarray) -> np.ndarray:
    """Flagged ids (slot << sub_bits | sub-bucket) as the passes' bitmap over the slots and
    the spare row of unwanted buckets."""
    is_flagged = np.zeros((slots + 1) << sub_bits, dtype=bool)
    is_flagged[ids] = True
    return np.packbits(is_flagged, bitorder="little")


def _collected(entries, parts, slot_of, flagged: Flagged, id_of_rank, within) -> np.ndarray:
    """The entries of the flagged groups, collected (into each part's own range) and sorted;
    a rank is number ``within`` of its group ``id_of_rank``, after the lower flagged groups'."""
    start = np.concatenate([[0], np.cumsum(flagged.per_part)[:-1]]).astype(np.int64)
    collected = np.empty(int(flagged.per_part.sum()), dtype=np.float32)
    flag_bits = flagged.bitmap()
    entries.library.radix_collect(
        entries.a, entries.b, entries.n, parts, slot_of.ctypes.data, flagged.sub_bits,
        flag_bits.ctypes.data, start.ctypes.data, collected.ctypes.data,
    )  # fmt: skip
    collected.sort()
    before = np.cumsum(flagged.sizes) - flagged.sizes  # entries of lower flagged groups
    return collected[before[np.searchsorted(flagged.ids, id_of_rank)] + within]


def _lowest_bits(entries: _Entries, parts, wanted, slot_of, sub, within_sub) -> np.ndarray:
    """Pass 3: the value of rank number ``within_sub`` (0-based) of each flat sub-bucket
    ``sub`` (slot * width + sub-bucket), from a histogram of the remaining low bits inside
    the sub-buckets holding a rank: every value is then exact, no entry is collected."""
    width, low_bits = 1 << SUB_BITS, 15 - SUB_BITS
    flagged = np.unique(sub)  # ascending
    rows = len(flagged)
    row_of = np.zeros((len(wanted) + 1) * width, dtype=np.int16)
    row_of[flagged] = np.arange(rows, dtype=np.int16)
    flag_bits = _bitmap(len(wanted), SUB_BITS, flagged)
    hist3 = np.empty((parts, rows, 1 << low_bits), dtype=np.uint32)
    entries.library.radix_pass3(
        entries.a, entries.b, entries.n, parts, slot_of.ctypes.data, SUB_BITS,
        flag_bits.ctypes.data, row_of.ctypes.data, rows, hist3.ctypes.data,
    )  # fmt: skip
    running = np.cumsum(hist3.sum(axis=0, dtype=np.int64), axis=1)  # (rows, lows)
    rank_rows = running[row_of[sub]]  # (ranks, lows)
    low = (rank_rows <= within_sub[:, None]).sum(axis=1).astype(np.uint32)
    bits = (
        (wanted[sub // width].astype(np.uint32) << 15)
        | ((sub % width).astype(np.uint32) << low_bits)
        | low
    )
    return bits.view(np.float32)


@dataclass
class MagnitudeCut:
    """What ``abs_keep_mask`` counted: float64 sums of x^2 over |x| > threshold and over all
    entries, and how many entries lie below and at the threshold."""

    sumsq_kept: float
    sumsq_total: float
    below: int
    ties: int


def abs_keep_mask(
    flat: torch.Tensor, threshold: float, keep_flat: torch.Tensor, parts: int = 1
) -> MagnitudeCut:
    """keep_flat = |flat| > threshold in one pass, with the sums and the counts that place
    the ties. ``flat``: a contiguous 1-d CPU float32 tensor without NaNs; ``keep_flat``: a
    contiguous bool tensor of the same length. One part by default: the pass runs near
    memory speed on one thread, and an OpenMP team's wake-up cost ~8 ms a call in a process
    that has loaded numpy's OpenBLAS (hselect's notes)."""
    sums = np.zeros((parts, 2), dtype=np.float64)
    counts = np.zeros((parts, 2), dtype=np.int64)
    native.load().abs_keep_mask(
        flat.data_ptr(), None, flat.numel(), threshold, parts,
        keep_flat.data_ptr(), sums.ctypes.data, counts.ctypes.data,
    )  # fmt: skip
    kept, total = (float(value) for value in sums.sum(axis=0))
    below, ties = (int(value) for value in counts.sum(axis=0))
    return MagnitudeCut(kept, total, below, ties)


TOP_BUCKETS, LOW_BINS = 1 << 16, 1 << 15  # |x| bits >> 15, and the 15 bits below
# From this many entries abs_histogram splits the count over torch's threads (2 threads: 0.65
# instead of 1.3 ms at 2.4M entries, 0.08 instead of 0.15 ms at 256K, load 3.6 from others).
TEAM_MIN_NUMEL = 1 << 20


def abs_histogram(
    task: torch.Tensor, base: torch.Tensor, bucket: int | None = None
) -> tuple[np.ndarray, int]:
    """Histogram of tau = task - base (float32, as ``iter_task_vectors`` computes it) by the
    bit pattern of |tau|, read from the two tensors (see ``supports_pair``; both contiguous):
    with ``bucket`` None, (counts of the top 16 bits (``TOP_BUCKETS``), 0); otherwise (counts
    of the low 15 bits of the entries inside that bucket (``LOW_BINS``), entries in lower
    buckets). Tensors under ``TEAM_MIN_NUMEL`` entries are counted by one thread."""
    library = native.load(_PAIR_INPUTS[task.dtype])
    bins = TOP_BUCKETS if bucket is None else LOW_BINS
    parts = _parts() if task.numel() >= TEAM_MIN_NUMEL else 1
    hist = np.empty((parts, bins), dtype=np.uint32)
    below = np.zeros(parts, dtype=np.int64)
    library.abs_histogram(
        task.data_ptr(), base.data_ptr(), task.numel(), -1 if bucket is None else bucket, parts,
        hist.ctypes.data, below.ctypes.data,
    )  # fmt: skip
    return hist.sum(axis=0, dtype=np.int64), int(below.sum())

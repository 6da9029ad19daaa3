"""One pass over the data: per bracket (lo, hi], the entries < lo and <= lo, the entries
inside it (positions and values), float64 sums of squares and optionally a keep mask
"value > keep bound". CPU: the compiled kernel (``kernel.py``) over whole rows plus an eager
tail; CUDA, small tensors and no compiler: chunked eager torch ops."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tadrop.quantiles import settings
from tadrop.quantiles.buffers import SCRATCH
from tadrop.quantiles.common import gather
from tadrop.quantiles.kernel import COMPILER, HALF_DTYPES


@dataclass
class RawPass:
    counts: list[int]  # entries < lo_j (j < settings.SLOTS), then entries <= lo_j
    indices: np.ndarray  # flat positions inside any bracket, ascending (int64)
    values: np.ndarray  # their (absolute) values, working dtype
    sumsq_total: float  # sum of squares of all entries, float64
    sumsq_kept: float  # sum of squares of entries above the keep bound, float64


def fused_or_eager_pass(flat, bounds, use_abs, keep_flat) -> RawPass:
    n = flat.numel()
    body = n - n % settings.FUSED_ROW
    if flat.is_cuda or n < settings.FUSED_MIN_NUMEL or not COMPILER.enabled:
        return eager_pass(flat, bounds, use_abs, keep_flat, 0, n)
    try:
        body_pass = fused_body_pass(flat[:body], bounds, use_abs, keep_flat)
    except Exception as error:  # no compiler, unsupported platform, ...: stay exact, go eager
        COMPILER.disable(error)
        return eager_pass(flat, bounds, use_abs, keep_flat, 0, n)
    if body == n:
        return body_pass
    return merge_passes(body_pass, eager_pass(flat, bounds, use_abs, keep_flat, body, n))


def merge_passes(first: RawPass, second: RawPass) -> RawPass:
    return RawPass(
        counts=[a + b for a, b in zip(first.counts, second.counts, strict=True)],
        indices=np.concatenate([first.indices, second.indices]),
        values=np.concatenate([first.values, second.values]),
        sumsq_total=first.sumsq_total + second.sumsq_total,
        sumsq_kept=first.sumsq_kept + second.sumsq_kept,
    )


def eager_pass(flat, bounds, use_abs, keep_flat, start, stop) -> RawPass:
    """The pass as chunked torch ops (any device): the reference for the fused kernel."""
    lows, highs, keep_hi = (
        bounds[: settings.SLOTS],
        bounds[settings.SLOTS : 2 * settings.SLOTS],
        bounds[2 * settings.SLOTS],
    )
    device = flat.device
    counts = torch.zeros(2 * settings.SLOTS, dtype=torch.long, device=device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    index_parts, value_parts = [], []
    chunk = settings.EAGER_CHUNK * (16 if flat.is_cuda else 1)  # fewer launches on a GPU
    for chunk_start in range(start, stop, chunk):
        chunk_stop = min(chunk_start + chunk, stop)
        work = flat[chunk_start:chunk_stop].to(bounds.dtype)
        magnitude = work.abs() if use_abs else work
        inside = torch.zeros(magnitude.shape, dtype=torch.bool, device=device)
        for j in range(settings.SLOTS):
            counts[j] += torch.count_nonzero(magnitude < lows[j])
            counts[settings.SLOTS + j] += torch.count_nonzero(magnitude <= lows[j])
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
    return RawPass(
        counts=counts.tolist(),
        indices=torch.cat(index_parts).cpu().numpy(),
        values=torch.cat(value_parts).cpu().numpy(),
        sumsq_total=sumsq_total,
        sumsq_kept=sumsq_kept,
    )


def fused_body_pass(body, bounds, use_abs, keep_flat) -> RawPass:
    """The pass as one torch.compile'd CPU kernel over rows of settings.FUSED_ROW entries."""
    if body.dtype in HALF_DTYPES and body.storage_offset() % 2:
        body = body.clone()  # the int32 view of pairs needs 4-byte alignment
    rows = body.view(-1, settings.FUSED_ROW)  # (R, C)
    # 16-bit floats: the reductions read pairs as int32 words; on 16-bit loads inductor picks
    # 32-lane vectors, whose many accumulators spill (3x slower here)
    words = rows.view(torch.int32) if body.dtype in HALF_DTYPES else None  # (R, C/2)
    inside_bytes = SCRATCH.bytes(body.numel())
    keep_bytes = None
    if keep_flat is not None:
        keep_bytes = keep_flat[: body.numel()].view(torch.uint8).view(rows.shape)
    kernel = COMPILER.kernel(use_abs, keep_flat is not None)
    outputs = kernel(rows, words, bounds, inside_bytes.view(rows.shape), keep_bytes)
    # small per-row results: numpy sums them without waking torch's thread pool
    counts = [
        int(row_counts.numpy().sum(dtype=np.int64)) for row_counts in outputs[: 2 * settings.SLOTS]
    ]
    sumsq_total = float(outputs[2 * settings.SLOTS].numpy().sum())
    sumsq_kept = (
        float(outputs[2 * settings.SLOTS + 1].numpy().sum()) if keep_flat is not None else 0.0
    )
    indices = np.flatnonzero(inside_bytes.numpy().view(np.bool_))
    values = gather(body, indices)
    if use_abs:
        np.abs(values, out=values)
    return RawPass(counts, indices, values, sumsq_total, sumsq_kept)

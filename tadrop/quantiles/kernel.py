"""The counting pass as one torch.compile'd CPU kernel, fp16/bf16 unpacked from int32 words,
and the process-wide compiler state (compiled kernels, whether compiling has paid off)."""

from __future__ import annotations

import math
import os
import threading
import warnings

import torch

from tadrop.quantiles import settings

HALF_DTYPES = (torch.bfloat16, torch.float16)


def half_bits_to_float(bits: torch.Tensor) -> torch.Tensor:
    """IEEE fp16 bit patterns (int32 holding 16 bits) -> exact float32, inside the kernel.

    Shifted into float32 position, the exponent and mantissa read as a float 2^112 times too
    small, subnormals included; exponent 31 (inf, NaN) lands at 2^16 and above.
    """
    scaled = ((bits & 0x7FFF) << 13).view(torch.float32) * 2.0**112
    special = torch.where(scaled == 65536.0, math.inf, math.nan)
    magnitude = torch.where(scaled >= 65536.0, special, scaled)
    return torch.where((bits & 0x8000) != 0, -magnitude, magnitude)


def unpack_halves(words: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
    """The two 16-bit floats in each int32 word (little-endian: even entry low), as float32."""
    if dtype == torch.bfloat16:  # bf16 is the top half of a float32
        return [(words << 16).view(torch.float32), (words & -65536).view(torch.float32)]
    return [half_bits_to_float(words & 0xFFFF), half_bits_to_float((words >> 16) & 0xFFFF)]


def make_kernel(use_abs: bool, with_keep: bool):
    def pass_kernel(rows, words, bounds, inside_out, keep_out):
        # per-row reductions: counts below / at-or-below each lo, float64 sums of squares
        parts = [rows.to(bounds.dtype)] if words is None else unpack_halves(words, rows.dtype)
        below = [0] * settings.SLOTS
        upto = [0] * settings.SLOTS
        total = kept = 0
        for work in parts:
            magnitude = work.abs() if use_abs else work
            for j in range(settings.SLOTS):
                below[j] = below[j] + (magnitude < bounds[j]).to(torch.int32)
                upto[j] = upto[j] + (magnitude <= bounds[j]).to(torch.int32)
            squares = work.to(torch.float64) * work.to(torch.float64)
            total = total + squares
            if with_keep:
                kept = kept + torch.where(magnitude > bounds[2 * settings.SLOTS], squares, 0.0)
        counts = [c.sum(1, dtype=torch.int32) for c in below + upto]
        sums = [total.sum(1)] + ([kept.sum(1)] if with_keep else [])
        # per-entry bytes: bool stores vectorize badly in inductor; uint8 through float32 is fast
        work = rows.to(bounds.dtype)
        magnitude = work.abs() if use_abs else work
        inside = None
        for j in range(settings.SLOTS):
            in_slot = (magnitude > bounds[j]) & (magnitude <= bounds[settings.SLOTS + j])
            inside = in_slot if inside is None else inside | in_slot
        inside_out.copy_(torch.where(inside, 1.0, 0.0).to(torch.uint8))
        if with_keep:
            keep_out.copy_(
                torch.where(magnitude > bounds[2 * settings.SLOTS], 1.0, 0.0).to(torch.uint8)
            )
        return [*counts, *sums]

    return pass_kernel


class CompiledPasses:
    """Compiled kernels (one per use_abs x with_keep), built once per process, and the count
    of entries sorted while none existed (see ``paid_off``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kernels: dict[tuple[bool, bool], object] = {}
        self.sorted_entries = 0
        self.enabled = os.environ.get("TADROP_QUANTILES_COMPILE", "1") != "0"

    def disable(self, error: Exception) -> None:
        self.enabled = False
        warnings.warn(
            f"tadrop.quantiles: the compiled pass failed ({type(error).__name__}: {error}); "
            "using chunked eager torch ops (exact, slower).",
            RuntimeWarning,
            stacklevel=3,
        )

    def paid_off(self, numel: int) -> bool:
        """Count ``numel`` more entries sorted instead of counted; True once the compiled
        pass is (or should be) in use: it exists, or sorting has cost about what compiling
        it would."""
        with self.lock:
            if self.kernels:
                return True
            self.sorted_entries += numel
            return self.sorted_entries > settings.COMPILE_PAYS_OFF_NUMEL

    def kernel(self, use_abs: bool, with_keep: bool):
        with self.lock:
            key = (use_abs, with_keep)
            if key not in self.kernels:
                self.kernels[key] = torch.compile(make_kernel(use_abs, with_keep), dynamic=True)
            return self.kernels[key]


COMPILER = CompiledPasses()

"""Value brackets (lo, hi] that hold wanted ranks: first from a fixed, seeded, stratified
random sample, then from exact counts seen in earlier passes."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from tadrop.quantiles import settings
from tadrop.quantiles.common import gather, interpolate, raise_for_nans


@functools.lru_cache(maxsize=8)
def sample_indices(n: int, m: int) -> torch.Tensor:
    """m sorted indices, one uniformly random index in each of m equal strata of [0, n)."""
    rng = np.random.Generator(np.random.PCG64(settings.SAMPLE_SEED))
    strata = np.arange(m + 1, dtype=np.int64) * n // m
    widths = np.diff(strata)
    offsets = np.minimum((rng.random(m) * widths).astype(np.int64), widths - 1)
    return torch.from_numpy(strata[:-1] + offsets)  # cached: callers must not modify it


def sample_size(n: int) -> int:
    """Balances sampling (~10 ns an entry) against collecting (~40 ns an entry, ~11 n/sqrt(m)
    entries): minimum near m = (22 n)^(2/3), e.g. 2^19 at 16M, 2^20.5 at 64M."""
    return min(n, max(1 << 14, min(1 << 22, round((22 * n) ** (2 / 3)))))


@dataclass
class Collected:
    """The entries a pass found inside any bracket (a small fraction of all entries)."""

    values: np.ndarray  # (absolute) values in the working dtype, in flat order
    indices: np.ndarray  # their flat positions, ascending
    sorted_values: np.ndarray  # values, sorted


@dataclass
class Slot:
    """One bracket (lo, hi] of a pass and what the pass found about it."""

    lo: float
    hi: float
    n_below: int  # entries < lo
    n_upto_lo: int  # entries <= lo
    collected: Collected
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


EMPTY_SLOT = (math.inf, -math.inf)


class Brackets:
    """Brackets for the ranks of one flattened tensor (or of its absolute values); ``known``
    collects (value, entries <= value) from every pass, so later brackets narrow."""

    def __init__(self, flat: torch.Tensor, *, use_abs: bool) -> None:
        self.flat = flat
        self.use_abs = use_abs
        self.n = flat.numel()
        self.known: list[tuple[float, int]] = []
        self._sample: np.ndarray | None = None

    def sample_sorted(self) -> np.ndarray:
        if self._sample is None:
            sample = gather(self.flat, sample_indices(self.n, sample_size(self.n)))
            if self.use_abs:
                np.abs(sample, out=sample)
            if np.isnan(sample).any():
                raise_for_nans(self.flat)
            self._sample = np.sort(sample)
        return self._sample

    def sample_bounds(self, k_min: int, k_max: int, sigmas: float) -> tuple[float, float]:
        """Sample values that fall below rank k_min and above rank k_max with high probability."""
        sample = self.sample_sorted()
        m, n = len(sample), self.n

        def spread(rank: int) -> float:  # standard deviation of a sample rank, plus rounding
            p = (rank + 0.5) / n
            return sigmas * math.sqrt(m * p * (1.0 - p) + 1.0) + 1.0

        j_lo = math.floor(k_min * m / n - spread(k_min))
        j_hi = math.ceil((k_max + 1) * m / n + spread(k_max))
        lo = float(sample[j_lo]) if j_lo >= 0 else -math.inf
        hi = float(sample[j_hi]) if j_hi < m else math.inf
        return lo, hi

    def known_bounds(self, k_min: int, k_max: int) -> tuple[float, float]:
        """(L, H]: the tightest bracket of ranks k_min..k_max from exact counts seen so far."""
        low = max((v for v, upto in self.known if upto <= k_min), default=-math.inf)
        high = min((v for v, upto in self.known if upto > k_max), default=math.inf)
        return low, high

    def bracket(self, k_min: int, k_max: int, attempt: int) -> tuple[float, float]:
        low, high = self.known_bounds(k_min, k_max)
        if attempt >= len(settings.BRACKET_SIGMAS):
            return low, high
        lo, hi = self.sample_bounds(k_min, k_max, settings.BRACKET_SIGMAS[attempt])
        lo, hi = max(lo, low), min(hi, high)
        return (lo, hi) if lo <= hi else (low, high)

    def quantile_bounds(self, q, ranks, found, attempt) -> tuple[float, float]:
        """[low, high] holding the quantile at level q: exact once its ranks are known."""
        if all(k in found for k in ranks):
            value = interpolate([q], self.n, found)[0].item()
            return value, value
        known_low, known_high = self.known_bounds(ranks[0], ranks[-1])
        if attempt >= len(settings.BRACKET_SIGMAS):
            return known_low, known_high
        # two quantiles err together: each gets sigmas / sqrt(2) for the drop-rate range
        low, high = self.sample_bounds(
            ranks[0], ranks[-1], settings.BRACKET_SIGMAS[attempt] / math.sqrt(2)
        )
        low, high = max(low, known_low), min(high, known_high)
        return (low, high) if low <= high else (known_low, known_high)

"""The engine's public functions: exact quantiles, k-th smallest, and keep masks that drop
the smallest entries (a fixed count, or a count computed from quantiles by a callback)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tadrop.quantiles.common import (
    QuantileInputError,
    check_qs,
    flat_values,
    interpolate,
    interpolation_ranks,
    keep_buffer,
)
from tadrop.quantiles.selector import Selector


def quantiles(values: torch.Tensor, qs: Sequence[float] | float | torch.Tensor) -> torch.Tensor:
    """Exact quantiles (float64, one per q) of all entries, as ``torch.quantile`` (linear)."""
    flat = flat_values(values, "values")
    return quantiles_of(flat, check_qs(qs), use_abs=False)


def abs_quantiles(tau: torch.Tensor, qs: Sequence[float] | float | torch.Tensor) -> torch.Tensor:
    """Exact quantiles of ``|tau|`` without materialising ``|tau|``."""
    flat = flat_values(tau, "tau")
    return quantiles_of(flat, check_qs(qs), use_abs=True)


def kth_smallest(values: torch.Tensor, k: int) -> float:
    """The k-th smallest entry (k from 1 to numel, as ``torch.kthvalue``), exact, any size."""
    flat = flat_values(values, "values")
    if not 1 <= k <= flat.numel():
        raise QuantileInputError(f"k={k} is outside [1, {flat.numel()}] (the number of entries).")
    return Selector(flat, use_abs=False).order_statistics([k - 1])[k - 1]


def smallest_k_keep_mask(
    magnitude: torch.Tensor, n_drop: int, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Bool mask shaped like ``magnitude`` with exactly ``n_drop`` False entries: the n_drop
    smallest values; ties at the threshold are dropped lowest flat index first."""
    flat = flat_values(magnitude, "magnitude")
    n = flat.numel()
    if not 0 <= n_drop <= n:
        raise QuantileInputError(f"n_drop={n_drop} is outside [0, {n}] (the number of entries).")
    keep = keep_buffer(magnitude, out)
    selector = Selector(flat, use_abs=False)
    selector.drop_smallest(lambda _q: (n_drop, n_drop), [], keep.view(-1), with_sums=False)
    return keep


def smallest_abs_keep_mask(
    tau: torch.Tensor, n_drop: int, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``smallest_k_keep_mask(tau.abs(), n_drop)`` without materialising ``tau.abs()``."""
    flat = flat_values(tau, "tau")
    n = flat.numel()
    if not 0 <= n_drop <= n:
        raise QuantileInputError(f"n_drop={n_drop} is outside [0, {n}] (the number of entries).")
    keep = keep_buffer(tau, out)
    Selector(flat, use_abs=True).drop_smallest(
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
    flat = flat_values(tau, "tau")
    levels = check_qs(q_levels)
    keep = keep_buffer(tau, out)
    selector = Selector(flat, use_abs=True)
    found, sumsq_total, sumsq_kept = selector.drop_smallest(drop_count_range, levels, keep.view(-1))
    q_values = interpolate(levels, flat.numel(), found).tolist()
    return AbsDropResult(keep, q_values, sumsq_total, sumsq_kept)


def quantiles_of(flat: torch.Tensor, qs: list[float], *, use_abs: bool) -> torch.Tensor:
    n = flat.numel()
    ranks = interpolation_ranks(qs, n)
    value_at = Selector(flat, use_abs=use_abs).order_statistics(ranks)
    return interpolate(qs, n, value_at)

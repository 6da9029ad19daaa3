"""One row of the statistics table: moments of a task vector tensor and the exact quantile
sketch of |tau|, at a few read passes (``tadrop.quantiles.radix``) instead of a full sort.

The sketch holds the exact quantiles of |tau| at ``SKETCH_GRID`` (0, 0.001, ..., 1; linear
interpolation between order statistics, as ``torch.quantile``). CPU fp32/bf16 tensors above
``SORT_MAX_NUMEL`` entries find their order statistics by selection on bit patterns, with
the moments fused into the first pass (float64 power sums; bf16: taken over the histogram of
its values); the rest (small tensors, fp16, fp64, CUDA, no C compiler) sort |tau|: the
reference the tests hold the fast route to. ``task_vector_stats`` gives the same row for
tau = task - base without storing tau (the passes subtract in registers).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from tadrop.quantiles import RankValues, interpolate, interpolation_ranks, radix
from tadrop.sparsify.tadrop_drop import DEFAULT_A, DEFAULT_B, DEFAULT_EPS, drop_rate_of

SKETCH_POINTS = 1001
SKETCH_GRID = np.linspace(0.0, 1.0, SKETCH_POINTS)
SORT_MAX_NUMEL = 1 << 16  # at or below: sorting is as fast as the passes' fixed costs


def sorted_magnitudes(tau: torch.Tensor) -> np.ndarray:
    """|tau| flattened and sorted ascending, as float32 numpy (numpy's SIMD sort on the CPU)."""
    if tau.device.type != "cpu":
        return torch.sort(tau.abs().flatten()).values.float().cpu().numpy()
    magnitude = tau.detach().abs().flatten().float().numpy()
    magnitude.sort(kind="quicksort")
    return magnitude


def quantiles_from_sorted(sorted_values: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Quantiles from all values sorted ascending, as torch.quantile (linear), in float64."""
    if sorted_values.size == 0:
        raise ValueError("Quantiles of an empty tensor are undefined.")
    return interpolate(np.asarray(qs, dtype=np.float64), sorted_values.size, sorted_values).numpy()


def _checked_flat(tau: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(tau, torch.Tensor) or not tau.is_floating_point():
        kind = tau.dtype if isinstance(tau, torch.Tensor) else type(tau).__name__
        raise ValueError(f"Tensor {name!r} is {kind}; statistics need a float tensor.")
    if tau.numel() == 0:
        raise ValueError(
            f"Tensor {name!r} is empty (shape {tuple(tau.shape)}): its statistics are "
            "undefined; exclude it with exclude=REGEX."
        )
    return tau.detach().reshape(-1)


def _raise_for_nans(name: str, count: int, numel: int) -> None:
    raise ValueError(
        f"Tensor {name!r} holds {count} NaN value(s) out of {numel}: its statistics are "
        "undefined; check the checkpoints it comes from."
    )


def _moments_by_torch(flat: torch.Tensor) -> dict[str, float]:
    values = flat.to(torch.float64)
    mean = float(values.mean())
    centered = values - mean
    variance = float((centered * centered).mean())
    return {
        "mean": mean,
        "variance": variance,
        "fourth": float((centered**4).mean()),
        "mean_abs": float(values.abs().mean()),
        "l2": float(torch.linalg.vector_norm(values)),
    }


def _moments_from_sums(power: radix.PowerSums, numel: int) -> dict[str, float]:
    """Central moments from float64 power sums of d = x - shift (shift is an entry, so d
    stays small against the spread and a constant tensor gives exact zeros)."""
    s1, s2, s3, s4, sum_abs, sum_squares = (float(value) for value in power.sums)
    mu = s1 / numel  # mean of d
    variance = max(s2 / numel - mu * mu, 0.0)
    fourth = s4 / numel - 4 * mu * s3 / numel + 6 * mu * mu * s2 / numel - 3 * mu**4
    return {
        "mean": power.shift + mu,
        "variance": variance,
        "fourth": max(fourth, 0.0),
        "mean_abs": sum_abs / numel,
        "l2": math.sqrt(sum_squares),
    }


def _order_statistics(flat: torch.Tensor, ranks: np.ndarray, name: str):
    """(values at ranks, moments, zero count) by the radix passes or by a full sort."""
    n = flat.numel()
    if n > SORT_MAX_NUMEL and radix.supports(flat):
        values, power = radix.abs_order_statistics(flat.contiguous(), ranks)
        if power.nans:
            _raise_for_nans(name, power.nans, n)
        return values, _moments_from_sums(power, n), power.zeros
    sorted_abs = sorted_magnitudes(flat)
    if np.isnan(sorted_abs[-1]):  # NaNs sort last
        _raise_for_nans(name, int(np.count_nonzero(np.isnan(sorted_abs))), n)
    zeros = int(np.searchsorted(sorted_abs, 0.0, side="right"))
    return sorted_abs[ranks], _moments_by_torch(flat), zeros


def tensor_stats(
    tau: torch.Tensor,
    a: float = DEFAULT_A,
    b: float = DEFAULT_B,
    eps: float = DEFAULT_EPS,
    *,
    name: str = "tau",
) -> dict[str, object]:
    """The statistics of one task vector tensor (moments in float64); ``name`` names it in
    errors (empty tensors and NaNs raise ValueError)."""
    flat = _checked_flat(tau, name)
    ranks = _sketch_ranks(flat.numel(), a, b)
    values, moments, zeros = _order_statistics(flat, ranks, name)
    return _row(flat.numel(), ranks, values, moments, zeros, a, b, eps)


def task_vector_stats(
    task: torch.Tensor,
    base: torch.Tensor,
    a: float = DEFAULT_A,
    b: float = DEFAULT_B,
    eps: float = DEFAULT_EPS,
    *,
    name: str = "tau",
) -> dict[str, object]:
    """``tensor_stats`` of tau = task - base in float32 (``tadrop.task_vectors``' rule):
    where the radix passes can read both tensors (CPU, same fp32/bf16 dtype) tau is computed
    inside them and never stored; otherwise it is built first."""
    flat = _checked_flat(task, name)
    if flat.numel() <= SORT_MAX_NUMEL or not radix.supports_pair(task, base):
        return tensor_stats(task.float() - base.float(), a, b, eps, name=name)
    ranks = _sketch_ranks(flat.numel(), a, b)
    values, power = radix.abs_order_statistics(
        flat.contiguous(), ranks, base.detach().reshape(-1).contiguous()
    )
    if power.nans:
        _raise_for_nans(name, power.nans, flat.numel())
    moments = _moments_from_sums(power, flat.numel())
    return _row(flat.numel(), ranks, values, moments, power.zeros, a, b, eps)


def _sketch_ranks(numel: int, a: float, b: float) -> np.ndarray:
    levels = np.concatenate([SKETCH_GRID, [a, b]])
    return np.asarray(interpolation_ranks(levels, numel), dtype=np.int64)


def _row(numel, ranks, values, moments, zeros, a, b, eps) -> dict[str, object]:
    order = RankValues(ranks, values)
    sketch = interpolate(SKETCH_GRID, numel, order).numpy()
    q_a, q_b = interpolate([a, b], numel, order).tolist()
    variance = moments["variance"]
    return {
        "numel": numel,
        "mean": moments["mean"],
        "std": math.sqrt(variance),
        "mean_abs": moments["mean_abs"],
        "l2": moments["l2"],
        "max_abs": float(values[-1]),  # rank n - 1 (the sketch lerps inf to nan there)
        "zero_frac": zeros / numel,
        "kurtosis": moments["fourth"] / variance**2 - 3.0 if variance > 0 else float("nan"),
        "q_a": q_a,
        "q_b": q_b,
        "drop_rate": drop_rate_of(q_a, q_b, eps),
        "sketch": sketch,
    }

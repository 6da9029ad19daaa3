"""Input checks and small helpers shared by the engine's routes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch


class QuantileInputError(ValueError):
    """A tensor or parameter that the quantile engine cannot work on; the message says why."""


def flat_values(values: torch.Tensor, what: str) -> torch.Tensor:
    """``values`` flattened (a view where possible), after checking it is a non-empty float
    tensor; ``what`` names it in the error."""
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


def check_qs(qs: Sequence[float] | float | torch.Tensor) -> list[float]:
    """Quantile levels as a list of floats in [0, 1]."""
    if isinstance(qs, torch.Tensor):
        qs = qs.reshape(-1).tolist()
    q_list = [float(qs)] if isinstance(qs, (int, float)) else [float(q) for q in qs]
    if not q_list:
        raise QuantileInputError("qs is empty: give at least one quantile level in [0, 1].")
    bad = [q for q in q_list if not 0.0 <= q <= 1.0]
    if bad:
        raise QuantileInputError(f"quantile levels must lie in [0, 1]; got {bad}.")
    return q_list


def keep_buffer(like: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """``out`` checked to be a contiguous bool tensor shaped like ``like``, or a new one."""
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


def interpolation_ranks(qs: Sequence[float] | np.ndarray, n: int) -> list[int]:
    """The order statistics (0-based ranks) that ``torch.quantile`` interpolates between."""
    ranks = torch.tensor(qs, dtype=torch.float64) * (n - 1)
    return sorted(set(ranks.long().tolist()) | set(ranks.ceil().long().tolist()))


class RankValues:
    """The order statistics at some ranks: ``values[i]`` is the ``ranks[i]``-th smallest
    (0-based; ranks sorted ascending); indexed by an array of those ranks."""

    def __init__(self, ranks: np.ndarray, values: np.ndarray) -> None:
        self.ranks = ranks
        self.values = values

    def __getitem__(self, wanted: np.ndarray) -> np.ndarray:
        return self.values[np.searchsorted(self.ranks, wanted)]


def interpolate(
    qs: Sequence[float] | np.ndarray,
    n: int,
    value_at: Mapping[int, float] | np.ndarray | RankValues,
) -> torch.Tensor:
    """Quantiles at levels ``qs`` of n values from their order statistics (``value_at[k]``:
    the k-th smallest, 0-based; a dict or ``RankValues`` of the needed ranks, or all n sorted
    values): linear interpolation done exactly as torch.quantile does it, in float64."""
    ranks = torch.tensor(qs, dtype=torch.float64) * (n - 1)
    below = ranks.long()
    weights = ranks - below
    above = ranks.ceil().long()
    if not isinstance(value_at, Mapping):
        values_below = torch.from_numpy(value_at[below.numpy()].astype(np.float64))
        values_above = torch.from_numpy(value_at[above.numpy()].astype(np.float64))
    else:
        values_below = torch.tensor([value_at[k] for k in below.tolist()], dtype=torch.float64)
        values_above = torch.tensor([value_at[k] for k in above.tolist()], dtype=torch.float64)
    return values_below.lerp(values_above, weights)


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; fp32/fp16/bf16 convert to float32 exactly."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def raise_for_nans(flat: torch.Tensor) -> None:
    """Raise QuantileInputError counting the NaNs of ``flat``, if it holds any."""
    nan_count = int(torch.isnan(flat).sum().item())
    if nan_count:
        raise QuantileInputError(
            f"the tensor holds {nan_count} NaN value(s) out of {flat.numel()}; quantiles of "
            "data with NaNs are undefined: clean the tensor (e.g. torch.nan_to_num) first."
        )


def gather(flat: torch.Tensor, indices: torch.Tensor | np.ndarray) -> np.ndarray:
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


def exact_bounds(q_levels: Sequence[float], n: int, found: Mapping[int, float]):
    """[low, high] bounds of each quantile once all its ranks are known: (value, value)."""
    return [(v, v) for v in (interpolate([q], n, found)[0].item() for q in q_levels)]

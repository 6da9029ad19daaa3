"""The numpy selection route leaves exact zeros out of its partitions when they are at least
ZERO_SHARE_TO_COMPACT of the magnitudes (numpy's partition degrades to a full sort when one
value fills most of the array): the kept set, the quantiles and the sums stay exactly those of
a stable full sort, with the cut below, at and above the zeros, on the fused and numpy masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tadrop.quantiles import native, selection, smallest_abs_keep_mask
from tadrop.quantiles import settings as limits
from tadrop.sparsify.tadrop_drop import tadrop_keep_mask


def reference_keep(tau: torch.Tensor, n_drop: int) -> np.ndarray:
    """Drop the n_drop smallest |tau|, ties lowest flat index first (a stable sort)."""
    magnitudes = tau.double().abs().flatten().numpy()
    keep = np.ones(magnitudes.size, dtype=bool)
    keep[np.argsort(magnitudes, kind="stable")[:n_drop]] = False
    return keep


def zero_heavy(n: int, zero_share: float, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(1, 5, (n,), generator=g).float() / 4  # ties at every level
    values[torch.rand(n, generator=g) < 0.5] *= -1
    values = torch.where(torch.rand(n, generator=g) < zero_share, 0.0, values)
    values[values == 0] = torch.where(torch.rand(n, generator=g) < 0.5, 0.0, -0.0)[values == 0]
    return values.to(dtype)


@pytest.fixture(params=["fused", "numpy"])
def route(request, monkeypatch):
    """Count the selections built over the nonzero entries only, on either mask pass."""
    if request.param == "fused" and native.load() is None:
        pytest.skip("no C compiler: no fused pass")
    if request.param == "numpy":
        monkeypatch.setattr(selection, "fused_mask_supports", lambda work: False)
    monkeypatch.setattr(limits, "TIE_CHUNK", 97)  # ties spread over many chunks
    compacted = {"count": 0}
    original = selection.NumpySelection.__init__

    def counted(self, values, zeros=0):
        compacted["count"] += zeros > 0
        original(self, values, zeros)

    monkeypatch.setattr(selection.NumpySelection, "__init__", counted)
    return compacted


def test_hand_computed_cut_inside_the_zeros(route):
    tau = torch.tensor([0.0, 2.0, -0.0, 1.0, 0.0, -3.0, 0.0, 1.0])  # four zeros
    assert smallest_abs_keep_mask(tau, 2).tolist() == [
        False, True, False, True, True, True, True, True,  # the first two zeros go
    ]  # fmt: skip
    assert smallest_abs_keep_mask(tau, 5).tolist() == [
        False, True, False, False, False, True, False, True,  # zeros, then the first 1.0
    ]  # fmt: skip
    assert route["count"] == 2


@pytest.mark.parametrize("zero_share", [0.1, 0.6, 0.95, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_kept_set_equals_a_stable_full_sort(route, zero_share, dtype):
    tau = zero_heavy(2001, zero_share, seed=5, dtype=dtype)
    zeros = int((tau == 0).sum())
    for n_drop in sorted({1, max(zeros - 1, 1), zeros, zeros + 1, 1000, 2000, 2001} - {0}):
        n_drop = min(n_drop, tau.numel())
        keep = smallest_abs_keep_mask(tau, n_drop)
        assert np.array_equal(keep.numpy(), reference_keep(tau, n_drop)), n_drop
    assert route["count"] > 0


@pytest.mark.parametrize("zero_share", [0.3, 0.9])
def test_tadrop_rate_scale_and_quantiles_match_the_dense_route(route, monkeypatch, zero_share):
    tau = zero_heavy(4099, zero_share, seed=9).reshape(1, 4099)
    tau[0, ::7] += torch.linspace(0.01, 3.0, len(tau[0, ::7]))  # some distinct magnitudes
    keep, rate, scale = tadrop_keep_mask(tau)
    assert route["count"] > 0
    monkeypatch.setattr(limits, "ZERO_SHARE_TO_COMPACT", 2.0)  # never compact
    expected = tadrop_keep_mask(tau)
    assert torch.equal(keep, expected[0])
    assert rate == expected[1]
    assert scale == pytest.approx(expected[2], rel=1e-12)


def test_few_zeros_are_partitioned_with_the_rest(route):
    tau = zero_heavy(4000, 0.02, seed=3)
    keep = smallest_abs_keep_mask(tau, 1500)
    assert np.array_equal(keep.numpy(), reference_keep(tau, 1500))
    assert route["count"] == 0

"""The fused C mask pass of the numpy selection route (``selection.cut_by_kernel``: the |x|
mask, both float64 sums and the counts below and at the threshold in one pass) gives exactly
what the numpy mask gives: the same kept entries (ties at the threshold dropped lowest flat
index first), drop rate and quantiles, and the float64 sums to rounding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from adversarial_data import adversarial

from tadrop.quantiles import native, selection, smallest_abs_keep_mask
from tadrop.quantiles import settings as limits
from tadrop.sparsify.tadrop_drop import tadrop_keep_mask

pytestmark = pytest.mark.skipif(native.load() is None, reason="no C compiler: no fused pass")

KINDS = ["normal", "ties", "constant", "zeros", "mostly_zeros", "cauchy", "column_scales"]


def on_route(monkeypatch, route: str) -> dict[str, int]:
    """Fused mask pass on or off (the numpy mask); count the fused passes run."""
    monkeypatch.setattr(limits, "TIE_CHUNK", 97)  # ties spread over many chunks
    if route == "numpy":
        monkeypatch.setattr(selection, "fused_mask_supports", lambda work: False)
    calls = {"fused": 0}
    original = selection.cut_by_kernel

    def counted(*args):
        calls["fused"] += 1
        return original(*args)

    monkeypatch.setattr(selection, "cut_by_kernel", counted)
    return calls


def both_routes(monkeypatch, compute, expect_fused=True):
    results = {}
    for route in ("numpy", "fused"):
        with monkeypatch.context() as patch:
            calls = on_route(patch, route)
            results[route] = compute()
            if route == "numpy" or expect_fused:
                assert (calls["fused"] > 0) == (route == "fused")
    return results["numpy"], results["fused"]


def test_hand_computed_ties_are_dropped_lowest_index_first(monkeypatch):
    calls = on_route(monkeypatch, "fused")
    tau = torch.tensor([2.0, -1.0, 1.0, 3.0, -1.0, 1.0, 0.5])
    keep = smallest_abs_keep_mask(tau, 3)  # drops 0.5 and the first two of the four 1.0s
    assert keep.tolist() == [True, False, False, True, True, True, False]
    assert calls["fused"] == 1


def test_hand_computed_sums(monkeypatch):
    on_route(monkeypatch, "fused")
    tau = torch.tensor([1.0, -2.0, 3.0, -4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    keep, drop_rate, scale = tadrop_keep_mask(tau)  # Q.5 = 5.5, Q.95 = 9.55: drops 6
    assert keep.tolist() == [False] * 6 + [True] * 4
    assert drop_rate == pytest.approx(5.5 / 9.55)
    assert scale == pytest.approx(math.sqrt(385 / (49 + 64 + 81 + 100)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", KINDS)
def test_tadrop_mask_rate_and_scale_equal_the_numpy_mask(monkeypatch, kind, dtype):
    tau = adversarial(kind, 4097, seed=7).reshape(17, 241).to(dtype)
    tau[::3] *= -1
    # the fused pass runs whenever n_drop > 0 (an all-zero tensor has d = 0: nothing to cut)
    expected, got = both_routes(monkeypatch, lambda: tadrop_keep_mask(tau), expect_fused=False)
    assert torch.equal(got[0], expected[0])
    assert got[1] == expected[1]
    assert got[2] == pytest.approx(expected[2], rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", KINDS)
def test_magnitude_trim_equals_the_numpy_mask(monkeypatch, kind, dtype):
    tau = adversarial(kind, 3001, seed=12).to(dtype)
    tau[::3] *= -1
    for n_drop in [1, 1500, 2999, 3001]:
        expected, got = both_routes(
            monkeypatch, lambda n_drop=n_drop: smallest_abs_keep_mask(tau, n_drop)
        )
        assert torch.equal(got, expected), n_drop


def test_non_contiguous_input_takes_the_numpy_mask(monkeypatch):
    tau = torch.randn(300, 400, generator=torch.Generator().manual_seed(3)).t()[:, ::3]
    calls = on_route(monkeypatch, "fused")
    keep, _, _ = tadrop_keep_mask(tau)
    with monkeypatch.context() as patch:
        on_route(patch, "numpy")
        assert torch.equal(keep, tadrop_keep_mask(tau)[0])
    assert calls["fused"] == 1  # reshape(-1) copies this one: contiguous


def test_nans_and_infinities(monkeypatch):
    on_route(monkeypatch, "fused")
    values = torch.randn(5000)
    values[[3, 50, 77]] = math.nan
    with pytest.raises(ValueError, match="3 NaN"):
        tadrop_keep_mask(values)
    with pytest.raises(ValueError, match="3 NaN"):
        smallest_abs_keep_mask(values, 10)
    values[[3, 50, 77]] = math.inf
    with pytest.raises(ValueError, match="infinite"):
        tadrop_keep_mask(values)
    keep = smallest_abs_keep_mask(values, 4998)  # the inf entries: the two last stay
    assert keep.nonzero().flatten().tolist() == [50, 77]


def test_other_dtypes_keep_the_numpy_mask(monkeypatch):
    calls = on_route(monkeypatch, "fused")
    for dtype in (torch.float16, torch.float64):
        tau = adversarial("ties", 2000, seed=1).to(dtype)
        keep = smallest_abs_keep_mask(tau, 700)
        reference = np.ones(2000, dtype=bool)
        reference[np.argsort(tau.double().abs().numpy(), kind="stable")[:700]] = False
        assert np.array_equal(keep.numpy(), reference)
    assert calls["fused"] == 1  # float16 converts to a float32 copy; float64 does not

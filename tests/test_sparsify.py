"""Sparsifiers: hand-computed small cases first, then properties over every registered one."""

import math

import pytest
import torch

from tadrop.registry import SPARSIFIERS, build_sparsifier
from tadrop.sparsify import (
    DARE,
    DELLA,
    Breadcrumbs,
    Magnitude,
    TADrop,
    sparsify,
    tadrop,
    tadrop_drop_rate,
)


def test_tadrop_hand_computed():
    tau = torch.tensor([1.0, -2, 3, -4, 5, -6, 7, -8, 9, -10])
    # Q_0.5(|tau|) = 5.5 (position 4.5), Q_0.95 = 9.55 (position 8.55); d = 5.5 / 9.55
    assert tadrop_drop_rate(tau) == pytest.approx(5.5 / 9.55, rel=1e-9)
    sparse, keep = tadrop(tau)
    # round(0.5759 * 10) = 6 dropped: the six smallest |tau|
    assert keep.tolist() == [False] * 6 + [True] * 4
    scale = math.sqrt(385 / 294)  # ||tau|| / ||kept||
    expected = torch.tensor([0.0] * 6 + [7 * scale, -8 * scale, 9 * scale, -10 * scale])
    torch.testing.assert_close(sparse, expected)


def test_tadrop_ablations_hand_computed():
    tau = torch.tensor([1.0, -2, 3, -4, 5, -6, 7, -8, 9, -10])
    sparse, _ = tadrop(tau, rescale="none")
    assert sparse.tolist() == [0.0] * 6 + [7, -8, 9, -10]
    sparse, _ = tadrop(tau, rescale="inverse")
    torch.testing.assert_close(sparse, torch.tensor([0.0] * 6 + [7, -8, 9, -10]) * 2.5)
    keep = TADrop(complement=True).keep_mask(tau)  # drop 1 - d = 0.424 -> 4 entries
    assert int(keep.sum()) == 6


def test_tadrop_ties_broken_by_lowest_index():
    tau = torch.tensor([1.0, 1, 1, 1, 2, 2, 2, 2, 2, 100])
    keep = TADrop(a=0.5, b=0.9).keep_mask(tau)
    n_drop = round(tadrop_drop_rate(tau, 0.5, 0.9) * 10)
    assert int((~keep).sum()) == n_drop
    dropped = (~keep).nonzero().flatten().tolist()
    assert dropped == list(range(n_drop))  # smallest first, then lowest index among the 2s


def test_tadrop_edge_tensors():
    zeros = torch.zeros(7)
    sparse, keep = tadrop(zeros)
    assert keep.all() and not sparse.any()
    single = torch.tensor([3.0])
    sparse, keep = tadrop(single)  # d = 3/(3+eps) -> rounds to 1: dropped
    assert keep.tolist() == [False]
    constant = torch.full((5,), 0.5)
    assert not TADrop().keep_mask(constant).any()


@pytest.mark.parametrize(("a", "b"), [(0.0, 0.9), (0.5, 0.5), (0.9, 0.5), (0.5, 1.0), (-0.1, 0.5)])
def test_tadrop_rejects_bad_quantiles(a, b):
    with pytest.raises(ValueError, match="0 < a < b < 1"):
        TADrop(a=a, b=b).keep_mask(torch.randn(10))


def test_tadrop_rejects_bad_eps():
    with pytest.raises(ValueError, match="eps > 0"):
        TADrop(eps=0).validate()


@pytest.mark.parametrize("density", [0.0, 1.5, -0.2])
def test_density_out_of_range(density):
    with pytest.raises(ValueError, match="density"):
        Magnitude(density=density).validate()


def test_magnitude_hand_computed():
    tau = torch.tensor([[0.1, -5.0], [3.0, -0.2]])
    keep = Magnitude(density=0.5).keep_mask(tau)
    assert keep.tolist() == [[False, True], [True, False]]


def test_breadcrumbs_drops_outliers_and_small():
    tau = torch.arange(1.0, 101.0)
    keep = Breadcrumbs(density=0.5, gamma=0.1).keep_mask(tau)
    assert keep.nonzero().flatten().tolist() == list(range(40, 90))


def test_dare_rate_and_rescale():
    tau = torch.ones(100_000)
    sparse, keep = sparsify(tau, DARE(p=0.9, seed=3), name="w", task="t")
    assert abs(1 - float(keep.float().mean()) - 0.9) < 0.01
    torch.testing.assert_close(sparse[keep], torch.full((int(keep.sum()),), 10.0))
    assert not sparse[~keep].any()


def test_della_keeps_larger_entries_more_often():
    tau = torch.linspace(0.01, 1, 50_000)
    keep = DELLA(density=0.5, epsilon=0.4, seed=0).keep_mask(tau, name="w")
    low, high = keep[:5000].float().mean(), keep[-5000:].float().mean()
    assert 0.28 < float(low) < 0.36 and 0.64 < float(high) < 0.72
    assert abs(float(keep.float().mean()) - 0.5) < 0.01


SEEDED = {"dare": {"p": 0.5}, "della": {"density": 0.5, "epsilon": 0.2}}


@pytest.mark.parametrize("name", sorted(SPARSIFIERS))
def test_conformance_over_registry(name):
    """Every sparsifier: boolean mask shaped like tau, repeatable, shared apply leaves dropped zero."""
    sparsifier = build_sparsifier(name, SEEDED.get(name, {}))
    if sparsifier.needs_fit:
        pytest.skip("global scope needs a family")
    tau = torch.randn(33, 17, generator=torch.Generator().manual_seed(1)) ** 3
    keep = sparsifier.keep_mask(tau, name="layer.w", task="t")
    assert keep.dtype == torch.bool and keep.shape == tau.shape
    again = build_sparsifier(name, SEEDED.get(name, {})).keep_mask(tau, name="layer.w", task="t")
    assert torch.equal(keep, again)
    sparse = sparsifier.apply(tau, keep)
    assert not sparse[~keep].any()


@pytest.mark.parametrize("numel", [1, 2, 10, 999, 4096])
@pytest.mark.parametrize("a,b", [(0.5, 0.95), (0.3, 0.99), (0.45, 0.8)])
def test_tadrop_properties(numel, a, b):
    tau = (
        torch.randn(numel, generator=torch.Generator().manual_seed(numel)) * torch.rand(numel) ** 4
    )
    sparse, keep = tadrop(tau, a=a, b=b)
    n_drop = round(tadrop_drop_rate(tau, a, b) * numel)
    assert int((~keep).sum()) == n_drop
    if keep.any():
        assert float(torch.linalg.vector_norm(sparse.double())) == pytest.approx(
            float(torch.linalg.vector_norm(tau.double())), rel=1e-5
        )
        # kept entries are the largest ones
        if (~keep).any():
            assert float(tau.abs()[keep].min()) >= float(tau.abs()[~keep].max())


def test_seeded_sparsifiers_depend_on_task_and_name():
    tau = torch.randn(1000)
    dare = DARE(p=0.5, seed=1)
    assert not torch.equal(
        dare.keep_mask(tau, name="a", task="t"), dare.keep_mask(tau, name="b", task="t")
    )
    assert not torch.equal(
        dare.keep_mask(tau, name="a", task="t"),
        DARE(p=0.5, seed=2).keep_mask(tau, name="a", task="t"),
    )


@pytest.mark.parametrize(
    "sparsifier",
    [
        Magnitude(density=0.3),
        Magnitude(density=0.3, rescale="l2"),
        TADrop(),
        TADrop(rescale="inverse"),
        TADrop(complement=True),
    ],
    ids=repr,
)
def test_sparsify_into_writes_what_keep_mask_and_apply_return(sparsifier):
    tau = torch.randn(257, 129, generator=torch.Generator().manual_seed(3))
    tau[0, :40] = 0.5  # ties at one magnitude
    keep_out = torch.empty(tau.shape, dtype=torch.bool)
    sparse_out = torch.empty_like(tau)
    sparsifier.sparsify_into(tau, keep_out, sparse_out, name="w", task="t")
    expected_sparse, expected_keep = sparsify(tau, sparsifier, name="w", task="t")
    assert torch.equal(keep_out, expected_keep)
    torch.testing.assert_close(sparse_out, expected_sparse, rtol=1e-6, atol=0)

"""Exact quantile engine: hand-computed cases, then equality with torch.quantile and with full
sorts on every code path (full sort, chunked eager pass, compiled pass), then bad inputs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from adversarial_data import adversarial
from hypothesis import given, settings
from hypothesis import strategies as st

from tadrop.quantiles import (
    abs_quantiles,
    kth_smallest,
    passes,
    quantiles,
    selection,
    smallest_abs_keep_mask,
    smallest_k_keep_mask,
)
from tadrop.quantiles import settings as limits
from tadrop.quantiles.brackets import Brackets
from tadrop.quantiles.kernel import COMPILER
from tadrop.sparsify.tadrop_drop import tadrop_keep_mask

FLOAT_DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def route_to_passes(patch: pytest.MonkeyPatch) -> None:
    """Send every tensor, however small, through the counting passes instead of a sort."""
    for constant in (
        "DIRECT_MAX_NUMEL",
        "SORT_MAX_NUMEL",
        "SORT_BEFORE_COMPILE_NUMEL",
        "SORT_WITHOUT_COMPILER_MAX_NUMEL",
    ):
        patch.setattr(limits, constant, 0)


@pytest.fixture(params=["full_sort", "torch_sort", "eager_pass", "compiled_pass"])
def path(request, monkeypatch):
    """Route even small tensors through one implementation of the engine (torch_sort: the
    whole-tensor sort CUDA uses, run on the CPU)."""
    if request.param == "torch_sort":
        monkeypatch.setattr(selection, "numpy_sorts", lambda tensor: False)
    if request.param == "full_sort":
        monkeypatch.setattr(limits, "TIE_CHUNK", 97)  # ties spread over many chunks
    if request.param not in ("full_sort", "torch_sort"):
        route_to_passes(monkeypatch)
        monkeypatch.setattr(limits, "EAGER_CHUNK", 997)  # many chunks, ragged last one
    if request.param == "eager_pass":
        monkeypatch.setattr(limits, "FUSED_MIN_NUMEL", 1 << 62)
    calls = []
    if request.param == "compiled_pass":
        monkeypatch.setattr(limits, "FUSED_MIN_NUMEL", 0)
        monkeypatch.setattr(limits, "FUSED_ROW", 256)  # rows of 256 plus an eager tail
        compiled_body_pass = passes.fused_body_pass
        monkeypatch.setattr(
            passes, "fused_body_pass", lambda *args: calls.append(1) or compiled_body_pass(*args)
        )
    yield request.param
    if request.param == "compiled_pass" and calls:
        assert COMPILER.enabled, "the compiled pass failed and fell back to eager"


def reference_quantiles(values: torch.Tensor, qs: list[float]) -> torch.Tensor:
    return torch.quantile(values.double().flatten(), torch.tensor(qs, dtype=torch.float64))


def reference_keep(magnitude: np.ndarray, n_drop: int) -> np.ndarray:
    """Full stable sort: equal values keep their flat order, so ties drop lowest index first."""
    keep = np.ones(magnitude.size, dtype=bool)
    keep[np.argsort(magnitude.reshape(-1), kind="stable")[:n_drop]] = False
    return keep.reshape(magnitude.shape)


def reference_tadrop(tau: torch.Tensor, a=0.5, b=0.95, eps=1e-12):
    magnitude = tau.double().abs()
    qa, qb = reference_quantiles(magnitude, [a, b]).tolist()
    drop_rate = min(max(qa / (qb + eps), 0.0), 1.0)
    keep = reference_keep(magnitude.numpy(), round(drop_rate * tau.numel()))
    kept_norm = magnitude.numpy()[keep].astype(np.float64)
    scale = magnitude.norm().item() / (math.sqrt(float(np.dot(kept_norm, kept_norm))) + eps)
    return keep, drop_rate, scale


KINDS = [
    "normal",
    "ties",
    "constant",
    "zeros",
    "mostly_zeros",
    "cauchy",
    "bimodal",
    "column_scales",
    "sorted",
]


# ------------------------------------------------------------------ hand-computed cases


def test_median_of_four_interpolates():
    assert quantiles(torch.tensor([4.0, 1.0, 3.0, 2.0]), [0.5]).tolist() == [2.5]


def test_abs_quantiles_use_magnitudes():
    tau = torch.tensor([-4.0, 1.0, -2.0, 3.0])
    assert abs_quantiles(tau, [0.0, 0.5, 1.0]).tolist() == [1.0, 2.5, 4.0]


def test_scalar_q_gives_one_value():
    assert quantiles(torch.tensor([1.0, 3.0]), 0.25).tolist() == [1.5]
    assert quantiles(torch.tensor([1.0, 3.0]), torch.tensor(0.75)).tolist() == [2.5]


def test_kth_smallest_counts_from_one():
    assert kth_smallest(torch.tensor([5.0, -1.0, 3.0]), 1) == -1.0
    assert kth_smallest(torch.tensor([5.0, -1.0, 3.0]), 3) == 5.0


def test_smallest_k_drops_smallest_and_breaks_ties_by_index():
    magnitude = torch.tensor([3.0, 1.0, 2.0, 1.0, 5.0])
    assert smallest_k_keep_mask(magnitude, 2).tolist() == [True, False, True, False, True]
    ties = torch.tensor([2.0, 1.0, 1.0, 1.0, 0.5])
    # 0.5 goes first, then the 1.0 at index 1; the later 1.0s stay
    assert smallest_k_keep_mask(ties, 2).tolist() == [True, False, True, True, False]


def test_smallest_k_edge_counts():
    magnitude = torch.rand(3, 4)
    assert smallest_k_keep_mask(magnitude, 0).all()
    assert not smallest_k_keep_mask(magnitude, 12).any()
    assert smallest_k_keep_mask(magnitude, 5).shape == (3, 4)


def test_tadrop_on_one_to_ten():
    # |tau| = 1..10: Q50 = 5.5, Q95 = 9.55, d = 0.5759..., round(5.759) = 6 dropped
    tau = torch.tensor([1.0, -2, 3, -4, 5, -6, 7, -8, 9, -10])
    keep, drop_rate, scale = tadrop_keep_mask(tau)
    assert drop_rate == pytest.approx(5.5 / 9.55)
    assert keep.tolist() == [False] * 6 + [True] * 4
    assert scale == pytest.approx(math.sqrt(385 / (49 + 64 + 81 + 100)))


# -------------------------------------------------------- equality with torch.quantile


@pytest.mark.parametrize("kind", KINDS)
def test_quantiles_match_torch_on_adversarial_data(path, kind):
    values = adversarial(kind, 5003)
    qs = [0.0, 0.001, 0.25, 0.5, 0.95, 1.0]
    for use_abs, engine in [(False, quantiles), (True, abs_quantiles)]:
        reference = reference_quantiles(values.abs() if use_abs else values, qs)
        assert torch.equal(engine(values, qs), reference), (kind, use_abs)


@pytest.mark.parametrize("n", range(1, 11))
def test_tiny_tensors(path, n):
    values = torch.randn(n, generator=torch.Generator().manual_seed(n))
    qs = [0.0, 0.3, 0.5, 0.95, 1.0]
    assert torch.equal(quantiles(values, qs), reference_quantiles(values, qs))
    keep, drop_rate, scale = tadrop_keep_mask(values)
    reference = reference_tadrop(values)
    assert keep.numpy().tolist() == reference[0].tolist()
    assert (drop_rate, scale) == pytest.approx(reference[1:], rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    dtype=st.sampled_from(FLOAT_DTYPES),
    qs=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
    seed=st.integers(0, 2**31 - 1),
    route=st.sampled_from(["full_sort", "eager_pass"]),
)
def test_quantiles_match_torch_for_random_shapes(shape, dtype, qs, seed, route):
    values = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    with pytest.MonkeyPatch.context() as patch:
        if route == "eager_pass":
            route_to_passes(patch)
            patch.setattr(limits, "FUSED_MIN_NUMEL", 1 << 62)
        assert torch.equal(quantiles(values, qs), reference_quantiles(values, qs))
        assert torch.equal(abs_quantiles(values, qs), reference_quantiles(values.abs(), qs))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_every_dtype_on_the_passes(path, dtype):
    values = adversarial("column_scales", 3001, seed=3).to(dtype)
    qs = [0.5, 0.95]
    assert torch.equal(abs_quantiles(values, qs), reference_quantiles(values.abs(), qs))
    keep, drop_rate, scale = tadrop_keep_mask(values)
    reference = reference_tadrop(values)
    assert np.array_equal(keep.numpy(), reference[0])
    assert (drop_rate, scale) == pytest.approx(reference[1:], rel=1e-12)


def test_infinities_match_torch(path):
    values = torch.randn(2000, generator=torch.Generator().manual_seed(1))
    values[::97] = math.inf
    values[5::89] = -math.inf
    qs = [0.0, 0.01, 0.5, 0.99, 1.0]
    torch.testing.assert_close(
        quantiles(values, qs), reference_quantiles(values, qs), rtol=0, atol=0, equal_nan=True
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_special_values(path, dtype):
    """Subnormals, signed zeros, the largest finite values and infinities survive unpacking."""
    info = torch.finfo(dtype)
    specials = [info.tiny / 4, -info.tiny / 8, info.tiny, 0.0, -0.0, info.max, -info.max]
    values = torch.randn(4000, generator=torch.Generator().manual_seed(9)).to(dtype)
    values[: len(specials)] = torch.tensor(specials, dtype=dtype)
    values[100::500] = math.inf
    values[101::700] = -math.inf
    qs = [0.0, 0.001, 0.3, 0.5, 0.95, 0.999, 1.0]
    for engine, reference in [(quantiles, values), (abs_quantiles, values.abs())]:
        torch.testing.assert_close(
            engine(values, qs), reference_quantiles(reference, qs), rtol=0, atol=0, equal_nan=True
        )
    values[2345] = math.nan
    with pytest.raises(ValueError, match="1 NaN"):
        abs_quantiles(values, [0.5])


def test_many_levels_take_the_sort_route():
    values = torch.randn(300_000, generator=torch.Generator().manual_seed(2))
    qs = [i / 1000 for i in range(1001)]
    assert torch.equal(abs_quantiles(values, qs), reference_quantiles(values.abs(), qs))


# ------------------------------------------------------------------- keep mask and scale


@pytest.mark.parametrize("kind", KINDS)
def test_tadrop_kept_set_equals_full_sort(path, kind):
    tau = adversarial(kind, 4097, seed=7).reshape(17, 241)
    keep, drop_rate, scale = tadrop_keep_mask(tau)
    reference_mask, reference_rate, reference_scale = reference_tadrop(tau)
    assert keep.shape == tau.shape and keep.dtype == torch.bool
    assert np.array_equal(keep.numpy(), reference_mask)
    assert int((~keep).sum()) == round(drop_rate * tau.numel())
    assert drop_rate == reference_rate
    if keep.any():
        assert scale == pytest.approx(reference_scale, rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_smallest_k_matches_full_sort(path, kind):
    magnitude = adversarial(kind, 3001, seed=11)
    for n_drop in [0, 1, 1500, 2999, 3001]:
        keep = smallest_k_keep_mask(magnitude, n_drop)
        assert np.array_equal(keep.numpy(), reference_keep(magnitude.numpy(), n_drop)), n_drop


@pytest.mark.parametrize("kind", KINDS)
def test_smallest_abs_matches_full_sort_of_the_magnitudes(path, kind):
    tau = adversarial(kind, 3001, seed=12)
    tau[::3] *= -1  # signs must not matter
    for n_drop in [0, 1, 1500, 2999, 3001]:
        keep = smallest_abs_keep_mask(tau, n_drop, out=torch.empty(tau.shape, dtype=torch.bool))
        assert np.array_equal(keep.numpy(), reference_keep(tau.abs().numpy(), n_drop)), n_drop


def test_scale_restores_the_l2_norm(path):
    tau = adversarial("cauchy", 20_000, seed=5)
    keep, _, scale = tadrop_keep_mask(tau)
    original = tau.double().norm().item()
    rescaled = (tau.double() * keep * scale).norm().item()
    assert rescaled == pytest.approx(original, rel=1e-5)


def test_out_buffer_is_filled_and_returned(path):
    tau = torch.randn(64, 80)
    out = torch.ones(64, 80, dtype=torch.bool)
    keep, _, _ = tadrop_keep_mask(tau, out=out)
    assert keep is out
    assert np.array_equal(out.numpy(), reference_tadrop(tau)[0])


@pytest.mark.parametrize("n", [1000, 100_000, 300_000])
def test_parameters_that_require_grad(n):
    tau = torch.nn.Parameter(torch.randn(n, generator=torch.Generator().manual_seed(n)))
    assert torch.equal(abs_quantiles(tau, [0.5]), reference_quantiles(tau.detach().abs(), [0.5]))
    assert np.array_equal(tadrop_keep_mask(tau)[0].numpy(), reference_tadrop(tau.detach())[0])


def test_non_contiguous_input():
    tau = torch.randn(300, 400).t()[:, ::3]
    qs = [0.5, 0.95]
    assert torch.equal(abs_quantiles(tau, qs), reference_quantiles(tau.abs(), qs))
    assert np.array_equal(tadrop_keep_mask(tau)[0].numpy(), reference_tadrop(tau)[0])


# ---------------------------------------------------------- exactness when brackets miss


@pytest.mark.parametrize("kind", ["normal", "ties", "column_scales", "mostly_zeros"])
def test_retries_stay_exact_when_the_sample_is_misleading(monkeypatch, kind):
    """A sample shifted far from the data makes every first bracket miss."""
    route_to_passes(monkeypatch)
    monkeypatch.setattr(limits, "FUSED_MIN_NUMEL", 1 << 62)
    original = Brackets.sample_sorted
    monkeypatch.setattr(Brackets, "sample_sorted", lambda self: original(self) * 3 + 1)
    tau = adversarial(kind, 5000, seed=13)
    assert torch.equal(abs_quantiles(tau, [0.5, 0.95]), reference_quantiles(tau.abs(), [0.5, 0.95]))
    keep, drop_rate, _ = tadrop_keep_mask(tau)
    assert np.array_equal(keep.numpy(), reference_tadrop(tau)[0])


def test_zero_width_brackets_still_exact(monkeypatch):
    route_to_passes(monkeypatch)
    monkeypatch.setattr(limits, "FUSED_MIN_NUMEL", 1 << 62)
    monkeypatch.setattr(limits, "BRACKET_SIGMAS", (-1.0, 0.0))
    tau = adversarial("cauchy", 6000, seed=17)
    keep, _, _ = tadrop_keep_mask(tau)
    assert np.array_equal(keep.numpy(), reference_tadrop(tau)[0])


def test_compile_failure_falls_back_to_eager(monkeypatch):
    route_to_passes(monkeypatch)
    monkeypatch.setattr(limits, "FUSED_MIN_NUMEL", 0)
    monkeypatch.setattr(COMPILER, "enabled", True)

    def broken(*_args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(COMPILER, "kernel", broken)
    tau = torch.randn(40_000, generator=torch.Generator().manual_seed(4))
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        keep, _, _ = tadrop_keep_mask(tau)
    assert np.array_equal(keep.numpy(), reference_tadrop(tau)[0])
    assert not COMPILER.enabled


# --------------------------------------------------------------------- a big tensor


def test_tensor_over_2_pow_25_against_numpy_partition():
    n = (1 << 25) + 4099
    # a permutation of 0..n-1 in float32: above 2^24 neighbours round together (ties)
    tau = torch.randperm(n, generator=torch.Generator().manual_seed(0)).float()
    tau[::2] *= -1
    magnitude = np.abs(tau.numpy())
    qs = [0.5, 0.95]
    ranks = [(q * (n - 1), math.floor(q * (n - 1)), math.ceil(q * (n - 1))) for q in qs]
    kth = sorted({k for _, low, high in ranks for k in (low, high)})
    parted = np.partition(magnitude, kth)
    expected = [
        torch.tensor(float(parted[low]), dtype=torch.float64)
        .lerp(torch.tensor(float(parted[high]), dtype=torch.float64), position - low)
        .item()
        for position, low, high in ranks
    ]
    del parted
    assert abs_quantiles(tau, qs).tolist() == expected

    keep, drop_rate, scale = tadrop_keep_mask(tau)
    assert drop_rate == min(expected[0] / (expected[1] + 1e-12), 1.0)
    n_drop = round(drop_rate * n)
    assert n - int(torch.count_nonzero(keep)) == n_drop
    threshold = float(np.partition(magnitude, n_drop - 1)[n_drop - 1])
    keep_np = keep.numpy()
    kept = magnitude[keep_np]
    assert kept.min() >= threshold
    assert magnitude[~keep_np].max() == threshold
    tie_keep = keep_np[np.flatnonzero(magnitude == threshold)]  # ties: dropped ones come first
    assert np.all(np.diff(tie_keep.astype(np.int8)) >= 0)
    norm = np.linalg.norm(magnitude.astype(np.float64))
    assert np.linalg.norm(kept.astype(np.float64)) * scale == pytest.approx(norm, rel=1e-5)


# ------------------------------------------------------------------------ bad inputs


def test_empty_tensor_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        quantiles(torch.empty(0, 3), [0.5])


@pytest.mark.parametrize("qs", [[-0.1], [1.5], [0.5, 2.0], []])
def test_levels_outside_unit_interval_are_rejected(qs):
    with pytest.raises(ValueError, match="quantile level|qs is empty"):
        quantiles(torch.ones(4), qs)


@pytest.mark.parametrize("n", [100, 200_000])
def test_nans_are_counted(n, monkeypatch):
    values = torch.randn(n)
    values[[3, 50, 77]] = math.nan
    with pytest.raises(ValueError, match="3 NaN"):
        quantiles(values, [0.5])
    with pytest.raises(ValueError, match="3 NaN"):
        tadrop_keep_mask(values)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_nan_missed_by_the_sample_is_still_found(monkeypatch, dtype):
    route_to_passes(monkeypatch)
    values = torch.randn(500_000).to(dtype)
    values[1] = math.nan  # almost surely not in the 2^14-entry sample
    with pytest.raises(ValueError, match="1 NaN"):
        abs_quantiles(values, [0.5])


@pytest.mark.parametrize("n", [100, 300_000])
def test_tadrop_rejects_infinities(n):
    tau = torch.randn(n)
    tau[: n // 2 + 7] = math.inf  # Q50 = Q95 = inf: d would be NaN
    with pytest.raises(ValueError, match="infinite"):
        tadrop_keep_mask(tau)
    tau[: n // 2 + 7] = 1.0
    tau[3] = -math.inf
    with pytest.raises(ValueError, match="infinite"):
        tadrop_keep_mask(tau)


def test_integer_tensor_is_rejected():
    with pytest.raises(ValueError, match="float"):
        quantiles(torch.arange(5), [0.5])


@pytest.mark.parametrize(
    ("a", "b", "eps"), [(0.0, 0.95, 1e-12), (0.6, 0.5, 1e-12), (0.5, 1.0, 1e-12), (0.5, 0.9, 0.0)]
)
def test_tadrop_parameters_are_validated(a, b, eps):
    with pytest.raises(ValueError, match="0 < a < b < 1|eps"):
        tadrop_keep_mask(torch.randn(10), a, b, eps)


def test_bad_drop_count_and_out_buffer():
    with pytest.raises(ValueError, match="n_drop"):
        smallest_k_keep_mask(torch.rand(5), 6)
    with pytest.raises(ValueError, match="bool tensor of shape"):
        tadrop_keep_mask(torch.rand(5), out=torch.empty(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="k=0"):
        kth_smallest(torch.rand(5), 0)


# ---------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cuda_matches_cpu(dtype, monkeypatch):
    monkeypatch.setattr(limits, "DIRECT_MAX_NUMEL", 1000)
    tau = adversarial("column_scales", 300_001, seed=21).to(dtype)
    on_gpu = tau.cuda()
    assert torch.equal(abs_quantiles(on_gpu, [0.5, 0.95]), abs_quantiles(tau, [0.5, 0.95]))
    keep, drop_rate, scale = tadrop_keep_mask(on_gpu)
    assert keep.is_cuda
    reference = tadrop_keep_mask(tau)
    assert torch.equal(keep.cpu(), reference[0])
    assert (drop_rate, scale) == pytest.approx(reference[1:], rel=1e-12)


def test_the_engine_knows_no_drop_formula():
    import tadrop.quantiles

    assert not hasattr(tadrop.quantiles, "tadrop_keep_mask")  # TADrop's rule: sparsify/


def test_no_warnings_on_the_default_path():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tadrop_keep_mask(torch.randn(1000))


def _count_routes(monkeypatch) -> dict[str, int]:
    routes = {"sort": 0, "compiled": 0}
    sort, compiled = selection.drop_by_numpy_select, passes.fused_body_pass

    def counted_sort(*args):
        routes["sort"] += 1
        return sort(*args)

    def counted_compiled(*args):
        routes["compiled"] += 1
        return compiled(*args)

    monkeypatch.setattr(selection, "drop_by_numpy_select", counted_sort)
    monkeypatch.setattr(passes, "fused_body_pass", counted_compiled)
    return routes


def test_mid_size_tensors_are_sorted_until_compiling_the_pass_pays_off(monkeypatch):
    """A small merge never waits for the compiler; a long one compiles once and uses the pass."""
    for constant, value in (
        ("SORT_MAX_NUMEL", 1000),
        ("FUSED_MIN_NUMEL", 0),
        ("FUSED_ROW", 256),
        ("SORT_BEFORE_COMPILE_NUMEL", 100_000),
        ("COMPILE_PAYS_OFF_NUMEL", 10_000),
    ):
        monkeypatch.setattr(limits, constant, value)
    monkeypatch.setattr(COMPILER, "kernels", {})
    monkeypatch.setattr(COMPILER, "sorted_entries", 0)
    monkeypatch.setattr(COMPILER, "enabled", True)
    routes = _count_routes(monkeypatch)
    taus = [adversarial("column_scales", 5000, seed=seed) for seed in range(4)]
    for tau in taus:
        keep, _, _ = tadrop_keep_mask(tau)
        assert np.array_equal(keep.numpy(), reference_tadrop(tau)[0])
    # 5000 + 5000 sorted entries stay within the 10000 budget; the third tensor compiles.
    assert routes["sort"] == 2 and routes["compiled"] >= 2
    large = adversarial("normal", 100_001, seed=9)  # above the sort limit: always the pass
    monkeypatch.setattr(COMPILER, "kernels", {})
    monkeypatch.setattr(COMPILER, "sorted_entries", 0)
    sorted_before = routes["sort"]
    keep, _, _ = tadrop_keep_mask(large)
    assert routes["sort"] == sorted_before
    assert np.array_equal(keep.numpy(), reference_tadrop(large)[0])


def test_without_a_compiler_mid_size_tensors_are_sorted(monkeypatch):
    monkeypatch.setattr(limits, "SORT_MAX_NUMEL", 1000)
    monkeypatch.setattr(COMPILER, "enabled", False)
    routes = _count_routes(monkeypatch)
    tau = adversarial("ties", 300_000, seed=5)
    keep, _, _ = tadrop_keep_mask(tau)
    assert routes == {"sort": 1, "compiled": 0}
    assert np.array_equal(keep.numpy(), reference_tadrop(tau)[0])

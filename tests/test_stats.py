"""Statistics table: values against direct computation; sketches reproduce d; save/load."""

import math
import os

import numpy as np
import pandas as pd
import pytest
import torch
from adversarial_data import adversarial
from family_fixtures import SHAPES, write_family
from safetensors.torch import load_file, save_file

from tadrop.io import FileCheckpoint
from tadrop.quantiles import radix
from tadrop.sparsify import tadrop_drop_rate
from tadrop.stats import (
    COLUMNS,
    SKETCH_GRID,
    abs_histogram,
    compute_stats,
    drop_rates_from_sketch,
    load_stats,
    overall_sparsity,
    quantiles_from_sorted,
    save_stats,
    sketch_matrix,
    tensor_stats,
)
from tadrop.stats import table as table_module
from tadrop.stats.cache import is_cached
from tadrop.stats.row import task_vector_stats
from tadrop.task_vectors import load_family


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    """Statistics caches go to a fresh home, never the shared one."""
    monkeypatch.setenv("TADROP_HOME", str(tmp_path / "home"))


@pytest.fixture
def family(tmp_path):
    base_dir, task_dirs = write_family(tmp_path)
    return load_family(base_dir, task_dirs)


def test_tensor_stats_hand_computed():
    tau = torch.tensor([0.0, 1.0, -1.0, 2.0, -2.0])
    stats = tensor_stats(tau, a=0.5, b=0.95)
    assert stats["mean"] == 0 and stats["std"] == pytest.approx(np.sqrt(2.0))
    assert stats["mean_abs"] == pytest.approx(1.2) and stats["max_abs"] == 2.0
    assert stats["zero_frac"] == pytest.approx(0.2) and stats["l2"] == pytest.approx(np.sqrt(10))
    # m4 / m2^2 - 3 = (2 + 32) / 5 / 4 - 3
    assert stats["kurtosis"] == pytest.approx(34 / 5 / 4 - 3)
    assert stats["q_a"] == 1.0 and stats["q_b"] == pytest.approx(2.0)


def test_constant_tensor_kurtosis_is_nan_not_error():
    stats = tensor_stats(torch.full((4,), 3.0))
    assert np.isnan(stats["kurtosis"]) and stats["std"] == 0


def test_table_matches_torch_quantile(family):
    table = compute_stats(family, device="cpu")
    assert list(table.columns) == COLUMNS
    assert len(table) == 3 * len(family.tensor_names)
    row = table[
        (table.task == "task1") & (table.tensor == "encoder.layer.0.output.dense.weight")
    ].iloc[0]
    tau = family.get_task_tensor("task1", row.tensor).float() - family.base.get(row.tensor).float()
    assert row.q_a == pytest.approx(
        float(torch.quantile(tau.abs().double().flatten(), 0.5)), rel=1e-12
    )
    assert row.drop_rate == pytest.approx(tadrop_drop_rate(tau), rel=1e-6)
    assert row.kind == "mlp.down" and row.layer == 0 and row.group == "mlp"
    grid = np.linspace(0, 1, 1001)
    expected = torch.quantile(tau.abs().double().flatten(), torch.tensor(grid)).numpy()
    np.testing.assert_allclose(row.sketch, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("a", "b"), [(0.5, 0.95), (0.45, 0.8), (0.3, 0.99), (0.123, 0.777)])
def test_drop_rates_from_sketch_without_reading_tensors(family, a, b):
    table = compute_stats(family, device="cpu")
    rates = drop_rates_from_sketch(table, a, b)
    for _, row in table.sample(6, random_state=0).iterrows():
        tau = (
            family.get_task_tensor(row.task, row.tensor).float()
            - family.base.get(row.tensor).float()
        )
        on_grid = round(a * 1000) == a * 1000 and round(b * 1000) == b * 1000
        assert rates[row.name] == pytest.approx(
            tadrop_drop_rate(tau, a, b), rel=1e-9 if on_grid else 0.05
        )
    with pytest.raises(ValueError, match="0 < a < b < 1"):
        drop_rates_from_sketch(table, 0.9, 0.5)


def test_overall_sparsity_weights_by_numel(family):
    table = compute_stats(family, device="cpu")
    sparsity = overall_sparsity(table, table["drop_rate"])
    task0 = table[table.task == "task0"]
    assert sparsity["task0"] == pytest.approx(
        float((task0.drop_rate * task0.numel).sum() / task0.numel.sum())
    )


def test_save_and_load_round_trip(family, tmp_path):
    table = compute_stats(family, device="cpu")
    path = save_stats(table, tmp_path / "stats.parquet")
    loaded = load_stats(path)
    assert loaded.attrs["provenance"]["a"] == 0.5
    np.testing.assert_array_equal(loaded.sketch.iloc[3], table.sketch.iloc[3])
    assert list(loaded.columns) == COLUMNS
    csv = save_stats(table, tmp_path / "stats.csv")
    assert "sketch" not in csv.read_text().splitlines()[0]
    with pytest.raises(ValueError, match="No statistics table"):
        load_stats(tmp_path / "missing.parquet")


def test_abs_histogram_counts_everything():
    tau = torch.randn(1000)
    for log in (False, True):
        histogram = abs_histogram(tau, bins=20, log=log)
        assert int(histogram["count"].sum()) == 1000 and len(histogram) == 20


# ------------------------------------------- the radix route against the sort reference


def sort_reference(tau: torch.Tensor) -> np.ndarray:
    """Today's sketch: a full sort of |tau|, then torch.quantile's interpolation."""
    magnitude = np.sort(tau.detach().abs().float().numpy().reshape(-1))
    return quantiles_from_sorted(magnitude, SKETCH_GRID)


STATS_KINDS = [
    "normal",
    "ties",
    "constant",
    "zeros",
    "mostly_zeros",
    "cauchy",
    "bimodal",
    "column_scales",
    "subnormals",
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", STATS_KINDS)
def test_radix_sketch_is_bit_identical_to_the_sort(kind, dtype):
    tau = adversarial(kind, 300_007, seed=3).to(dtype)
    assert radix.supports(tau), "no C compiler: the radix route is not under test"
    stats = tensor_stats(tau, name="layer.weight")
    np.testing.assert_array_equal(stats["sketch"], sort_reference(tau))
    magnitude = tau.double().abs()
    assert stats["max_abs"] == magnitude.max().item()
    assert stats["zero_frac"] == float((magnitude == 0).double().mean())
    assert stats["mean"] == pytest.approx(tau.double().mean().item(), rel=1e-9, abs=1e-300)
    assert stats["std"] == pytest.approx(tau.double().std(unbiased=False).item(), rel=1e-9)
    assert stats["l2"] == pytest.approx(magnitude.norm().item(), rel=1e-12)
    assert stats["mean_abs"] == pytest.approx(magnitude.mean().item(), rel=1e-12)


@pytest.mark.parametrize("kind", ["normal", "cauchy", "column_scales"])
def test_radix_moments_match_the_sort_route(kind, monkeypatch):
    tau = adversarial(kind, 200_003, seed=5)
    fast = tensor_stats(tau)
    monkeypatch.setattr(radix, "supports", lambda tensor: False)
    reference = tensor_stats(tau)
    np.testing.assert_array_equal(fast["sketch"], reference["sketch"])
    for key in ("mean", "std", "mean_abs", "l2", "kurtosis"):
        assert fast[key] == pytest.approx(reference[key], rel=1e-9, abs=1e-12), key
    for key in ("max_abs", "zero_frac", "q_a", "q_b", "drop_rate"):
        assert fast[key] == reference[key], key


def test_radix_route_on_a_tensor_over_2_pow_25_entries():
    n = (1 << 25) + 4099
    # a permutation of 0..n-1 in float32: above 2^24 neighbours round together (ties)
    tau = torch.randperm(n, generator=torch.Generator().manual_seed(0)).float()
    tau[::2] *= -1
    stats = tensor_stats(tau)
    np.testing.assert_array_equal(stats["sketch"], sort_reference(tau))
    assert stats["q_a"] == float(quantiles_from_sorted(np.sort(tau.abs().numpy()), [0.5])[0])


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_zero_d_and_one_element_tensors(shape):
    stats = tensor_stats(torch.full(shape, -3.0))
    assert stats["numel"] == 1 and stats["max_abs"] == 3.0 and stats["mean"] == -3.0
    assert np.all(stats["sketch"] == 3.0) and stats["std"] == 0 and np.isnan(stats["kurtosis"])
    assert stats["drop_rate"] == pytest.approx(1.0)


@pytest.mark.parametrize("n", [10, 300_000])
def test_empty_and_nan_tensors_are_named_in_the_error(n):
    with pytest.raises(ValueError, match="'model.embed'.*empty"):
        tensor_stats(torch.empty(0, 4), name="model.embed")
    tau = torch.randn(n)
    tau[[1, 7]] = math.nan
    with pytest.raises(ValueError, match="'lm_head.weight' holds 2 NaN"):
        tensor_stats(tau, name="lm_head.weight")


# ------------------------------------------------------------------ the on-disk cache


def no_reading(self, name):
    raise AssertionError(f"read {name} although the statistics are cached")


def test_reopening_a_family_reads_no_tensor(tmp_path, monkeypatch):
    base_dir, task_dirs = write_family(tmp_path)
    first = compute_stats(load_family(base_dir, task_dirs), device="cpu")
    cached = list((tmp_path / "home" / "cache" / "stats").iterdir())
    assert [path.suffix for path in cached] == [".parquet"]  # no temporary file left behind
    monkeypatch.setattr(FileCheckpoint, "get", no_reading)
    reopened = load_family(base_dir, task_dirs)
    seen = []
    again = compute_stats(reopened, device="cpu", progress=lambda *args: seen.append(args))
    assert seen == [(len(reopened.tensor_names),) * 2 + ("statistics read from the cache",)]
    pd.testing.assert_frame_equal(again.drop(columns="sketch"), first.drop(columns="sketch"))
    np.testing.assert_array_equal(sketch_matrix(again), sketch_matrix(first))
    assert again.attrs["provenance"] == first.attrs["provenance"]
    with pytest.raises(AssertionError, match="although the statistics are cached"):
        compute_stats(reopened, device="cpu", cache=False)
    with pytest.raises(AssertionError, match="although the statistics are cached"):
        compute_stats(reopened, a=0.4, device="cpu")  # another a: another table


def test_a_rewritten_checkpoint_is_read_again(tmp_path, monkeypatch):
    base_dir, task_dirs = write_family(tmp_path)
    first = compute_stats(load_family(base_dir, task_dirs), device="cpu")
    task_file = task_dirs["task1"] / "model.safetensors"
    state = load_file(str(task_file))
    save_file({name: tensor * 2 for name, tensor in state.items()}, str(task_file))
    reads = []
    original_get = FileCheckpoint.get
    monkeypatch.setattr(
        FileCheckpoint, "get", lambda self, name: reads.append(name) or original_get(self, name)
    )
    again = compute_stats(load_family(base_dir, task_dirs), device="cpu")
    assert reads
    changed = again.task == "task1"
    assert not np.allclose(again[changed].l2, first[changed].l2)
    np.testing.assert_array_equal(again[~changed].l2, first[~changed].l2)


def test_touching_a_file_invalidates_the_cache(tmp_path):
    base_dir, task_dirs = write_family(tmp_path)
    family = load_family(base_dir, task_dirs)
    compute_stats(family, device="cpu")
    assert is_cached(family, 0.5, 0.95, 1e-12)
    task_file = task_dirs["task0"] / "model.safetensors"
    status = task_file.stat()
    os.utime(task_file, ns=(status.st_atime_ns, status.st_mtime_ns + 1))
    assert not is_cached(load_family(base_dir, task_dirs), 0.5, 0.95, 1e-12)


def test_without_a_c_compiler_statistics_fall_back_to_the_sort(monkeypatch, tmp_path):
    from tadrop.quantiles import native

    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native, "_cache_dir", lambda: tmp_path / "kernels")
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setenv("PATH", str(tmp_path))  # neither cc nor gcc
    tau = adversarial("cauchy", 100_003, seed=2)
    with pytest.warns(RuntimeWarning, match="could not build the statistics kernel"):
        stats = tensor_stats(tau)
    assert not radix.supports(tau)
    np.testing.assert_array_equal(stats["sketch"], sort_reference(tau))


@pytest.mark.parametrize("n", [5, 300_001])
def test_max_abs_of_a_tensor_with_infinities_is_inf(n):
    tau = adversarial("normal", n)
    tau[1] = -math.inf
    assert tensor_stats(tau)["max_abs"] == math.inf


# ------------------------------------------- task vectors computed inside the passes


def pair(kind: str, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A base and a fine-tuned tensor whose difference is an adversarial task vector."""
    base = adversarial("normal", n, seed=11).to(dtype)
    return (base.float() + adversarial(kind, n, seed=12)).to(dtype), base


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["normal", "ties", "zeros", "cauchy", "column_scales"])
def test_task_vector_stats_equal_the_stats_of_the_stored_task_vector(kind, dtype):
    task, base = pair(kind, 200_003, dtype)
    assert radix.supports_pair(task, base), "no C compiler: the fused route is not under test"
    fused = task_vector_stats(task, base, name="w")
    stored = tensor_stats(task.float() - base.float(), name="w")  # task_vectors' arithmetic
    np.testing.assert_array_equal(fused["sketch"], stored["sketch"])
    np.testing.assert_array_equal(fused["sketch"], sort_reference(task.float() - base.float()))
    for key in ("max_abs", "zero_frac", "q_a", "q_b", "drop_rate", "numel"):
        assert fused[key] == stored[key], key
    for key in ("mean", "std", "mean_abs", "l2", "kurtosis"):
        assert fused[key] == pytest.approx(stored[key], rel=1e-12, abs=1e-300, nan_ok=True), key


def test_task_vector_stats_of_mixed_dtypes_and_small_tensors_build_tau_first():
    task, base = pair("normal", 200_003, torch.float32)
    mixed = task_vector_stats(task.bfloat16(), base)
    assert not radix.supports_pair(task.bfloat16(), base)
    stored = tensor_stats(task.bfloat16().float() - base)
    np.testing.assert_array_equal(mixed.pop("sketch"), stored.pop("sketch"))
    assert mixed == stored
    small = task_vector_stats(task[:1000], base[:1000])
    np.testing.assert_array_equal(small["sketch"], sort_reference(task[:1000] - base[:1000]))


def test_nans_in_a_fused_task_vector_are_named():
    task, base = pair("normal", 200_003, torch.float32)
    task[5] = math.nan
    with pytest.raises(ValueError, match="'w' holds 1 NaN"):
        task_vector_stats(task, base, name="w")


BIG_SHAPES = {"encoder.layer.0.intermediate.dense.weight": (400, 300), **SHAPES}


def test_family_statistics_store_no_task_vector(tmp_path, monkeypatch):
    base_dir, task_dirs = write_family(tmp_path, tasks=2, shapes=BIG_SHAPES)
    family = load_family(base_dir, task_dirs)
    reference = compute_stats(family, device="cpu", cache=False)
    monkeypatch.setattr(table_module, "iter_task_vectors", None)  # the CPU loop must not use it
    table = compute_stats(family, device="cpu", cache=False)
    pd.testing.assert_frame_equal(table, reference)
    big = table[table["tensor"] == "encoder.layer.0.intermediate.dense.weight"].iloc[0]
    tau = (
        (load_file(str(task_dirs["task0"] / "model.safetensors"))[big["tensor"]])
        - load_file(str(base_dir / "model.safetensors"))[big["tensor"]]
    )
    np.testing.assert_array_equal(big["sketch"], sort_reference(tau))


def test_an_infinity_in_a_checkpoint_is_named_by_file(tmp_path):
    base_dir, task_dirs = write_family(tmp_path, tasks=1, shapes=BIG_SHAPES)
    path = task_dirs["task0"] / "model.safetensors"
    state = load_file(str(path))
    state["encoder.layer.0.intermediate.dense.weight"][3, 4] = math.inf
    save_file(state, str(path))
    with pytest.raises(ValueError, match="task0"):
        compute_stats(load_family(base_dir, task_dirs), device="cpu", cache=False)


def test_ranks_among_exact_zeros_are_not_collected(monkeypatch):
    tau = adversarial("mostly_zeros", 300_007, seed=4)  # 70% zeros
    refined = []
    original = radix._refine

    def spy(entries, parts, per_part, cumulative, buckets, within):
        refined.append(len(buckets))
        return original(entries, parts, per_part, cumulative, buckets, within)

    monkeypatch.setattr(radix, "_refine", spy)
    stats = tensor_stats(tau)
    np.testing.assert_array_equal(stats["sketch"], sort_reference(tau))
    assert refined and refined[0] < 700  # ~30% of the 1001 sketch ranks lie above the zeros


def test_without_a_c_compiler_task_vector_stats_build_tau_and_sort(monkeypatch, tmp_path):
    from tadrop.quantiles import native

    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native, "_cache_dir", lambda: tmp_path / "kernels")
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setenv("PATH", str(tmp_path))
    task, base = pair("cauchy", 100_003, torch.bfloat16)
    with pytest.warns(RuntimeWarning, match="could not build the statistics kernel"):
        stats = task_vector_stats(task, base)
    assert not radix.supports_pair(task, base)
    np.testing.assert_array_equal(stats["sketch"], sort_reference(task.float() - base.float()))


def test_tensor_cut_reads_qa_qb_d_and_the_threshold_from_the_sketch() -> None:
    from tadrop.stats import SKETCH_POINTS, tensor_cut

    # |tau| uniform on the sketch grid 0, 0.001, ..., 1: Q_q = q exactly.
    row = pd.DataFrame({"sketch": [np.linspace(0.0, 1.0, SKETCH_POINTS)]})
    cut = tensor_cut(row, 0.5, 0.8, 1e-12)
    assert cut.q_a == pytest.approx(0.5) and cut.q_b == pytest.approx(0.8)
    assert cut.drop_rate == pytest.approx(0.625)  # 0.5 / (0.8 + 1e-12)
    assert cut.threshold == pytest.approx(0.625)  # Q_d = d on this grid

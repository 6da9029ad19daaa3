"""Statistics table: values against direct computation; sketches reproduce d; save/load."""

import numpy as np
import pytest
import torch
from family_fixtures import write_family

from tadrop.sparsify import tadrop_drop_rate
from tadrop.stats import (
    COLUMNS,
    abs_histogram,
    compute_stats,
    drop_rates_from_sketch,
    load_stats,
    overall_sparsity,
    save_stats,
    tensor_stats,
)
from tadrop.task_vectors import load_family


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

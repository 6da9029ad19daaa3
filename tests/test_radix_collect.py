"""Pass 3 of the fp32 radix route either counts the low bits inside the sub-buckets holding a
rank (``_lowest_bits``) or, when those sub-buckets hold at most COLLECT_MAX entries, collects
and sorts them (``_collected``): both give the sort's sketch bit for bit, on one tensor and on
a task vector read from two, and each is taken where it should be."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from adversarial_data import adversarial

from tadrop.quantiles import radix
from tadrop.stats import tensor_stats
from tadrop.stats.row import SKETCH_GRID, quantiles_from_sorted, task_vector_stats

KINDS = ["normal", "ties", "mostly_zeros", "cauchy", "bimodal", "column_scales", "subnormals"]


def sort_reference(tau: torch.Tensor) -> np.ndarray:
    return quantiles_from_sorted(np.sort(tau.abs().float().numpy().reshape(-1)), SKETCH_GRID)


@pytest.fixture(params=["collect", "count"])
def pass3(request, monkeypatch):
    if not radix.supports(torch.zeros(1)):
        pytest.skip("no C compiler: no radix route")
    if request.param == "count":
        monkeypatch.setattr(radix, "COLLECT_MAX", -1)
    taken = {"collect": 0, "count": 0}
    for route, function in (("collect", "_collected"), ("count", "_lowest_bits")):
        original = getattr(radix, function)

        def spy(*args, route=route, original=original):
            taken[route] += 1
            return original(*args)

        monkeypatch.setattr(radix, function, spy)
    return request.param, taken


@pytest.mark.parametrize("kind", KINDS)
def test_one_tensor_sketch_equals_the_sort(pass3, kind):
    route, taken = pass3
    tau = adversarial(kind, 300_007, seed=8)
    stats = tensor_stats(tau, name="w")
    np.testing.assert_array_equal(stats["sketch"], sort_reference(tau))
    assert sum(taken.values()) == 1
    # collected wherever the rank sub-buckets are small (not around a spike or a tight mode)
    assert taken[route] == 1 or (route, kind) in (("collect", "ties"), ("collect", "bimodal"))


@pytest.mark.parametrize("kind", ["normal", "ties", "cauchy"])
def test_task_vector_sketch_equals_the_sort(pass3, kind):
    route, taken = pass3
    base = adversarial("normal", 200_003, seed=1)
    task = base + adversarial(kind, 200_003, seed=2) * 0.01
    stats = task_vector_stats(task, base, name="w")
    np.testing.assert_array_equal(stats["sketch"], sort_reference(task - base))
    assert taken[route] == 1 or (route, kind) == ("collect", "ties")


def test_many_entries_in_the_rank_sub_buckets_are_counted(monkeypatch):
    """A spike: one value fills 40% of the tensor, so its sub-bucket holds more than
    COLLECT_MAX entries and pass 3 counts instead of collecting."""
    if not radix.supports(torch.zeros(1)):
        pytest.skip("no C compiler: no radix route")
    monkeypatch.setattr(radix, "COLLECT_MAX", 50_000)
    tau = adversarial("normal", 300_007, seed=6)
    tau[::5] = 0.75
    tau[1::5] = -0.75
    collected = []
    original = radix._collected
    monkeypatch.setattr(radix, "_collected", lambda *a: collected.append(1) or original(*a))
    np.testing.assert_array_equal(tensor_stats(tau)["sketch"], sort_reference(tau))
    assert not collected

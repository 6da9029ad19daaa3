"""Pass 3 of the fp32 radix route either counts the low bits inside the sub-buckets holding a
rank (``_lowest_bits``) or, when those sub-buckets hold at most SUB_COLLECT_MAX entries, collects
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


ROUTES = {"buckets": 1 << 20, "sub-buckets": 50_000, "count": -1}  # the limits of each


@pytest.fixture(params=list(ROUTES))
def pass3(request, monkeypatch):
    """The route refinement takes: collect the entries of the buckets holding a rank (right
    after pass 1), collect those of the sub-buckets (after pass 2), or count (pass 3)."""
    if not radix.supports(torch.zeros(1)):
        pytest.skip("no C compiler: no radix route")
    monkeypatch.setattr(radix, "COLLECT_MAX", ROUTES[request.param])
    monkeypatch.setattr(radix, "SUB_COLLECT_MAX", ROUTES[request.param])
    taken = {route: 0 for route in ROUTES}
    collect, count = radix._collected, radix._lowest_bits

    def collected(entries, parts, slot_of, flagged, *rest):
        taken["buckets" if flagged.sub_bits == 0 else "sub-buckets"] += 1
        return collect(entries, parts, slot_of, flagged, *rest)

    def counted(*args):
        taken["count"] += 1
        return count(*args)

    monkeypatch.setattr(radix, "_collected", collected)
    monkeypatch.setattr(radix, "_lowest_bits", counted)
    return request.param, taken


def took(route: str, kind: str, taken: dict[str, int]) -> bool:
    """Exactly one route ran; counting always can; on smooth data each route runs as set (a
    spike or a tight mode can make buckets too full to collect, a sparse tensor too empty to
    need pass 2)."""
    if sum(taken.values()) != 1:
        return False
    return taken[route] == 1 or kind not in ("normal", "cauchy") and route != "count"


@pytest.mark.parametrize("kind", KINDS)
def test_one_tensor_sketch_equals_the_sort(pass3, kind):
    route, taken = pass3
    tau = adversarial(kind, 300_007, seed=8)
    stats = tensor_stats(tau, name="w")
    np.testing.assert_array_equal(stats["sketch"], sort_reference(tau))
    assert took(route, kind, taken), taken


@pytest.mark.parametrize("kind", ["normal", "ties", "cauchy"])
def test_task_vector_sketch_equals_the_sort(pass3, kind):
    route, taken = pass3
    base = adversarial("normal", 200_003, seed=1)
    task = base + adversarial(kind, 200_003, seed=2) * 0.01
    stats = task_vector_stats(task, base, name="w")
    np.testing.assert_array_equal(stats["sketch"], sort_reference(task - base))
    assert took(route, kind, taken), taken


def test_many_entries_in_the_rank_sub_buckets_are_counted(monkeypatch):
    """A spike: one value fills 40% of the tensor, so its sub-bucket holds more than
    SUB_COLLECT_MAX entries and pass 3 counts instead of collecting."""
    if not radix.supports(torch.zeros(1)):
        pytest.skip("no C compiler: no radix route")
    monkeypatch.setattr(radix, "COLLECT_MAX", 50_000)
    monkeypatch.setattr(radix, "SUB_COLLECT_MAX", 50_000)
    tau = adversarial("normal", 300_007, seed=6)
    tau[::5] = 0.75
    tau[1::5] = -0.75
    collected = []
    original = radix._collected
    monkeypatch.setattr(radix, "_collected", lambda *a: collected.append(1) or original(*a))
    np.testing.assert_array_equal(tensor_stats(tau)["sketch"], sort_reference(tau))
    assert not collected

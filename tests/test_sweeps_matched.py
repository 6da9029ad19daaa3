"""Fig. 1 with matched sparsity: TADrop's a solved from the quantile sketches so that every
sparsifier is run at the same target overall sparsities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from family_fixtures import write_family

from dashboard.sources import FamilySource, open_family
from tadrop.experiments import (
    BASELINE,
    matched_sparsity_points,
    run_points,
    solve_tadrop_a,
    tadrop_sparsity,
)
from tadrop.experiments.sweeps import A_GAP
from tadrop.stats import SKETCH_GRID, compute_stats, sketch_matrix


def sketched(rows: list[tuple[str, int, np.ndarray]]) -> tuple[pd.DataFrame, np.ndarray]:
    """A statistics table of (task, numel, sketch) rows and its sketch matrix."""
    table = pd.DataFrame(
        {
            "task": [task for task, _, _ in rows],
            "tensor": [f"t{index}" for index in range(len(rows))],
            "numel": [numel for _, numel, _ in rows],
        }
    )
    return table, np.stack([sketch for _, _, sketch in rows])


# |tau| uniform on [0, 1]: Q_q = q, so d = a / b; |tau| = u^2: Q_q = q^2, so d = a^2 / b^2
UNIFORM, SQUARED = SKETCH_GRID.copy(), SKETCH_GRID**2


def test_sparsity_from_sketches_is_the_numel_weighted_mean_over_tasks():
    table, sketches = sketched([("x", 100, UNIFORM), ("x", 300, SQUARED), ("y", 50, UNIFORM)])
    # task x: (100 * 0.5 + 300 * 0.25) / 400 = 0.3125; task y: 0.5; mean 0.40625
    assert tadrop_sparsity(table, sketches, 0.4, 0.8) == pytest.approx(0.40625, abs=1e-9)


def test_solving_a_with_b_kept_gives_the_hand_computed_a():
    table, sketches = sketched([("x", 100, UNIFORM), ("x", 300, SQUARED)])
    setting = solve_tadrop_a(table, sketches, 0.3125, b=0.8, tolerance=1e-9)
    assert setting.b == 0.8
    assert setting.a == pytest.approx(0.4, abs=1e-6)
    assert setting.reached == pytest.approx(0.3125, abs=1e-9)
    uniform_only, uniform_sketch = sketched([("x", 10, UNIFORM)])
    assert solve_tadrop_a(uniform_only, uniform_sketch, 0.25, b=0.9).a == pytest.approx(0.225, 1e-3)


def test_an_unreachable_target_gives_the_nearest_end_and_says_what_it_reached():
    # a tensor of zeros (Q_b = 0) drops nothing at any a: half the entries can never go
    table, sketches = sketched([("x", 100, UNIFORM), ("x", 100, np.zeros_like(UNIFORM))])
    setting = solve_tadrop_a(table, sketches, 0.8, b=0.9)
    assert setting.a == pytest.approx(0.9 - A_GAP)
    assert setting.reached == pytest.approx(0.5, abs=1e-5)
    assert setting.target == 0.8


def test_bad_targets_and_quantiles_are_value_errors():
    table, sketches = sketched([("x", 10, UNIFORM)])
    with pytest.raises(ValueError, match="outside"):
        solve_tadrop_a(table, sketches, 1.5, b=0.9)
    with pytest.raises(ValueError, match="0 < a < b < 1"):
        solve_tadrop_a(table, sketches, 0.5, b=1.2)


@pytest.fixture
def family(tmp_path):
    base, tasks = write_family(tmp_path / "family", tasks=2)
    return open_family(
        FamilySource("synthetic", str(base), tuple(str(p) for p in tasks.values()), tuple(tasks))
    )


@pytest.mark.parametrize("target", [0.2, 0.5, 0.8])
def test_a_merge_at_the_solved_a_reaches_the_target_sparsity(family, target):
    stats = compute_stats(family, device="cpu")
    setting = solve_tadrop_a(stats, sketch_matrix(stats), target, b=0.95)
    assert setting.reached == pytest.approx(target, abs=1e-3)
    (point,) = matched_sparsity_points("task_arithmetic", {}, ["tadrop"], [target], [setting],
                                       baseline=False)  # fmt: skip
    (run,) = run_points(family, [point.point], device="cpu")
    # the merge drops round(d * n) entries of each tensor (9 tensors of 8-128 entries here)
    assert run.mean_sparsity == pytest.approx(target, abs=0.01)


def test_matched_points_share_their_targets_and_end_with_the_baseline(family):
    stats = compute_stats(family, device="cpu")
    targets = [0.3, 0.6]
    settings = [solve_tadrop_a(stats, sketch_matrix(stats), t, b=0.95) for t in targets]
    points = matched_sparsity_points(
        "emr", {}, ["tadrop", "uniform", "dare", "magnitude"], targets, settings
    )
    by_series = {}
    for point in points:
        by_series.setdefault(point.series, []).append(point.target)
    assert by_series == {
        "tadrop": targets, "uniform": targets, "dare": targets, "magnitude": targets, BASELINE: [0.0]
    }  # fmt: skip
    params = {(p.series, p.target): p.point.sparsifier_params for p in points}
    assert params[("dare", 0.3)] == {"p": 0.3}
    assert params[("magnitude", 0.6)] == {"density": pytest.approx(0.4)}
    assert params[("uniform", 0.6)]["rescale"] == "l2"
    assert params[("tadrop", 0.6)]["a"] == settings[1].a
    runs = list(run_points(family, [p.point for p in points], device="cpu"))
    reached = {(p.series, p.target): run.mean_sparsity for p, run in zip(points, runs, strict=True)}
    for target in targets:
        for series in ("tadrop", "uniform", "magnitude"):
            assert reached[(series, target)] == pytest.approx(target, abs=0.01)
        assert reached[("dare", target)] == pytest.approx(target, abs=0.1)  # random draws
    assert reached[(BASELINE, 0.0)] == 0.0
    with pytest.raises(ValueError, match="solved"):
        matched_sparsity_points("emr", {}, ["tadrop"], [0.3])
    with pytest.raises(ValueError, match="Unknown sweep sparsifier"):
        matched_sparsity_points("emr", {}, ["della"], [0.3])

"""The one sweep loop (tadrop.experiments): which points a sweep has, and what run_points does
with them: the merges equal direct ones, the score function sees each, progress ends at 1."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from tadrop.experiments import Point, ab_points, grid_points, run_points, sparsity_points
from tadrop.merge import run_merge
from tadrop.merge.base import MergeCancelled
from tadrop.registry import build_merge
from tadrop.task_vectors import load_family
from tests.family_fixtures import write_family


@pytest.fixture
def family(tmp_path: Path):
    base, tasks = write_family(tmp_path / "models", tasks=2)
    return load_family(base, tasks)


def test_sparsity_points_sweep_each_sparsifiers_own_parameter() -> None:
    points = sparsity_points("ties", {"scaling": 0.5}, ["magnitude", "dare", "tadrop"],
                             [0.25, 0.75], [0.4], {"b": 0.9})  # fmt: skip
    assert [(p.sparsifier, p.label) for p in points] == [
        ("magnitude", "density=0.75"),
        ("magnitude", "density=0.25"),
        ("dare", "p=0.25"),
        ("dare", "p=0.75"),
        ("tadrop", "a=0.4"),
    ]
    assert points[-1].sparsifier_params == {"b": 0.9, "a": 0.4}
    assert all(point.method_params == {"scaling": 0.5} for point in points)


def test_ab_points_skip_pairs_with_a_not_below_b() -> None:
    points = ab_points("emr", {}, [0.5, 0.95], [0.9, 0.95], {"eps": 1e-12})
    assert [(p.sparsifier_params["a"], p.sparsifier_params["b"]) for p in points] == [
        (0.5, 0.9),
        (0.5, 0.95),
    ]
    with pytest.raises(ValueError, match="a < b"):
        ab_points("emr", {}, [0.9], [0.5], {})


def test_grid_points_without_a_sweep_is_one_unlabelled_point() -> None:
    (point,) = grid_points("ties", "magnitude", {"scaling": 1.0}, {"density": 0.2}, None)
    assert point == Point("", "ties", "magnitude", {"scaling": 1.0}, {"density": 0.2})


def test_run_points_merges_like_run_merge_and_scores_each_point(family) -> None:
    points = [
        Point("plain", "task_arithmetic", None, {"scaling": 0.5}),
        Point("trimmed", "task_arithmetic", "magnitude", {"scaling": 0.5}, {"density": 0.5}),
    ]
    seen: list[float] = []
    scored: list[str] = []

    def score(result, progress):
        progress(1.0, "scored")
        scored.append(result.method)
        return {"kept": 1.0 - sum(result.sparsity().values()) / len(result.sparsity())}

    runs = list(
        run_points(family, points, score=score, device="cpu",
                   progress=lambda done, total, text: seen.append(done / total))
    )  # fmt: skip
    assert [run.point.label for run in runs] == ["plain", "trimmed"]
    assert scored == ["task_arithmetic", "task_arithmetic"]
    assert runs[0].score == {"kept": 1.0} and runs[1].score["kept"] == pytest.approx(0.5, abs=0.01)
    assert seen == sorted(seen) and seen[-1] == 1.0 and 0.5 in seen  # point 1 scored = halfway
    direct = run_merge(family, *build_merge("task_arithmetic", "magnitude", {"scaling": 0.5},
                                            {"density": 0.5}), device="cpu")  # fmt: skip
    for name, tensor in direct.merged.items():
        assert torch.equal(runs[1].result.merged[name], tensor)


def test_a_set_cancel_stops_the_sweep(family) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(MergeCancelled):
        list(run_points(family, [Point("", "task_arithmetic")], device="cpu", cancel=cancel))

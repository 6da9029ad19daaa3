"""Merges walk the family inside ``keep_scratch_memory`` (each tensor's temporaries reuse the
previous tensor's heap pages): in memory (run_merge) and written (merge_to_folder, also EMR's
two walks), and the walk itself holds its tensors' stacks only while they are in use."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from family_fixtures import write_family

from tadrop.merge import base, folder
from tadrop.registry import build_merge
from tadrop.task_vectors import load_family


@pytest.fixture
def family(tmp_path):
    base_dir, task_dirs = write_family(tmp_path / "models")
    return load_family(base_dir, task_dirs)


@pytest.fixture
def entered(monkeypatch):
    """Count entries into keep_scratch_memory, and walks that ran inside it."""
    state = {"inside": False, "entered": 0, "walks_inside": 0, "walks": 0}

    @contextmanager
    def recording():
        state["entered"] += 1
        state["inside"] = True
        try:
            yield
        finally:
            state["inside"] = False

    real_walk = base.iter_merged

    def walk(*args, **kwargs):
        state["walks"] += 1
        state["walks_inside"] += state["inside"]
        yield from real_walk(*args, **kwargs)

    for module in (base, folder):
        monkeypatch.setattr(module, "keep_scratch_memory", recording)
    monkeypatch.setattr(base, "iter_merged", walk)
    monkeypatch.setattr(folder, "iter_merged", walk)
    return state


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "emr"])
def test_merges_walk_inside_keep_scratch_memory(family, tmp_path, entered, method):
    base.run_merge(family, *build_merge(method, "tadrop"), device="cpu")
    folder.merge_to_folder(family, *build_merge(method, "tadrop"), tmp_path / "out", device="cpu")
    assert entered["entered"] == 2
    assert entered["walks"] == (3 if method == "emr" else 2)  # EMR writes in two walks
    assert entered["walks_inside"] == entered["walks"]

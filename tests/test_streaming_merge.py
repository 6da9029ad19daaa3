"""merge_to_folder through the planned writer: the same bytes as merging in memory and writing
with the plain writer, for streaming methods and for EMR's two walks (task models, compact
artifact, both), and EMR holding no model while it writes."""

from __future__ import annotations

import math
import threading
import weakref
from pathlib import Path

import pytest
import torch
from family_fixtures import write_family
from safetensors.torch import save_file

import tadrop.merge.folder as folder
from tadrop.merge import EMR, MergeCancelled, run_merge
from tadrop.merge.emr_artifact import ARTIFACT_DIR, UNIFIED_FILE, write_artifact
from tadrop.merge.folder import merge_to_folder
from tadrop.registry import build_merge
from tadrop.sparsify import TADrop
from tadrop.task_vectors import load_family


@pytest.fixture
def family(tmp_path):
    # position_ids (int64, never merged) and the excluded query weights sit between merged
    # tensors in the base's order, so the writers receive them out of the file's order
    base_dir, task_dirs = write_family(tmp_path / "models")
    return load_family(base_dir, task_dirs, exclude=r"layer\.1\.attention")


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
@pytest.mark.parametrize("max_shard_bytes", [5 * 2**30, 700])
@pytest.mark.parametrize("method_name", ["task_arithmetic", "ties"])
def test_streamed_merge_writes_the_plain_writers_bytes(
    family, tmp_path, monkeypatch, method_name, max_shard_bytes, dtype
):
    options = dict(device="cpu", max_shard_bytes=max_shard_bytes, dtype=dtype)
    planned, _ = merge_to_folder(
        family, *build_merge(method_name, "tadrop"), tmp_path / "a", **options
    )
    monkeypatch.setattr(folder, "output_plan", lambda *args: None)  # the plain writer, as before
    plain, _ = merge_to_folder(
        family, *build_merge(method_name, "tadrop"), tmp_path / "b", **options
    )
    expected = tree_bytes(plain)
    assert tree_bytes(planned) == expected
    assert ("model.safetensors.index.json" in expected) == (max_shard_bytes == 700)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
@pytest.mark.parametrize("max_shard_bytes", [5 * 2**30, 700])
@pytest.mark.parametrize("output", ["task_models", "compact", "both"])
@pytest.mark.parametrize("sparsifier", [None, "tadrop"])
def test_emr_in_two_walks_writes_the_in_memory_merges_bytes(
    family, tmp_path, output, sparsifier, max_shard_bytes, dtype
):
    def sparsify():
        return TADrop() if sparsifier else None

    options = dict(max_shard_bytes=max_shard_bytes, dtype=dtype)
    in_memory = run_merge(family, EMR(output=output), sparsify(), device="cpu")
    expected = tree_bytes(in_memory.save(tmp_path / "in_memory", **options))
    path, streamed = merge_to_folder(
        family, EMR(output=output), sparsify(), tmp_path / "streamed", device="cpu", **options
    )
    assert tree_bytes(path) == expected
    assert streamed.unified == {} and streamed.packed_masks == {}  # no model was held
    assert streamed.rescalers == in_memory.rescalers
    assert streamed.sparsity() == in_memory.sparsity()  # entries counted once, not per walk
    assert streamed.artifact == in_memory.artifact


def test_the_artifact_has_the_safetensors_librarys_bytes(family, tmp_path):
    """The artifact used to be written by safetensors' save_file; the planned files match it."""
    result = run_merge(family, EMR(output="compact"), device="cpu")
    write_artifact(result, tmp_path / "artifact")
    save_file(result.unified, str(tmp_path / "library.safetensors"))
    library = (tmp_path / "library.safetensors").read_bytes()
    assert (tmp_path / "artifact" / UNIFIED_FILE).read_bytes() == library


def test_progress_counts_both_walks_and_cancel_leaves_nothing(family, tmp_path):
    seen = []
    merge_to_folder(
        family, EMR(), None, tmp_path / "out", device="cpu", progress=lambda *a: seen.append(a[:2])
    )
    count = len(family.tensor_names)
    assert seen == [(done, 2 * count) for done in range(1, 2 * count + 1)]
    cancel = threading.Event()

    def cancel_in_second_walk(done: int, total: int, name: str) -> None:
        if done > count:
            cancel.set()

    with pytest.raises(MergeCancelled):
        merge_to_folder(
            family, EMR(output="both"), TADrop(), tmp_path / "cancelled", device="cpu",
            progress=cancel_in_second_walk, cancel=cancel,
        )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "out"]


def test_a_task_named_like_the_artifact_folder_is_refused_before_any_walk(tmp_path):
    base_dir, task_dirs = write_family(tmp_path / "models", tasks=2)
    family = load_family(base_dir, {ARTIFACT_DIR: task_dirs["task0"], "b": task_dirs["task1"]})
    with pytest.raises(ValueError, match="rename the task"):
        merge_to_folder(family, EMR(), None, tmp_path / "out", device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


@pytest.mark.parametrize("method_name", ["task_arithmetic", "emr"])
def test_the_walk_drops_a_tensors_stacks_before_making_the_next(family, tmp_path, method_name):
    """When the sparsifier sees a tensor, no earlier (K, *shape) stack buffer is alive: the
    walk, the writer and EMR's two walks hold one tensor's state, not two; the walk reuses its
    buffer (a new one only when a tensor is bigger than all before it in that walk)."""
    method, sparsifier = build_merge(method_name, "magnitude")
    stacks: list[weakref.ref] = []
    most_alive = []
    real = sparsifier.keep_mask_into if method_name == "emr" else sparsifier.sparsify_into

    def probe(tau, *args, **where):
        stack = tau._base  # tau is one task's row of the walk's stack
        if not stacks or stacks[-1]() is not stack:
            most_alive.append(sum(ref() is not None for ref in stacks))
            stacks.append(weakref.ref(stack))
        return real(tau, *args, **where)

    name = "keep_mask_into" if method_name == "emr" else "sparsify_into"
    object.__setattr__(sparsifier, name, probe)
    merge_to_folder(family, method, sparsifier, tmp_path / "out", device="cpu")
    walks = 2 if method_name == "emr" else 1
    sizes = [math.prod(family.base.shape(name)) for name in family.tensor_names]
    growths = sum(size > max(sizes[:i], default=0) for i, size in enumerate(sizes))
    assert len(most_alive) == walks * growths < walks * len(sizes)
    assert max(most_alive) == 0


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
@pytest.mark.parametrize("method", ["task_arithmetic", "emr"])
def test_saving_an_in_memory_result_writes_the_plain_writers_bytes(
    family, tmp_path, monkeypatch, method, dtype
):
    """``result.save`` streams ``iter_model`` into the planned writer: the same files."""
    import tadrop.merge.save as save

    result = run_merge(family, *build_merge(method, "tadrop"), device="cpu")
    if method == "emr":
        result.params["output"] = "both"
    planned = result.save(tmp_path / "planned", dtype=dtype, max_shard_bytes=700)
    monkeypatch.setattr(save, "output_plan", lambda *args: None)  # the plain writer, as before
    plain = result.save(tmp_path / "plain", dtype=dtype, max_shard_bytes=700)
    assert tree_bytes(planned) == tree_bytes(plain)

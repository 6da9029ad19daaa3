"""ModelFamily: key matching, skipped tensors, regex selection, the lazy walk, bad input."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from family_fixtures import write_family
from safetensors.torch import load_file, save_file

from tadrop.task_vectors import FamilyError, iter_task_vectors, load_family


def test_task_vectors_equal_differences(tmp_path):
    base_dir, task_dirs = write_family(tmp_path)
    family = load_family(base_dir, task_dirs)
    assert family.task_names == ["task0", "task1", "task2"]
    assert (
        "embeddings.position_ids" in family.skipped
        and "non-float" in family.skipped["embeddings.position_ids"]
    )
    base = load_file(str(base_dir / "model.safetensors"))
    finetuned = load_file(str(task_dirs["task1"] / "model.safetensors"))
    for tensor in iter_task_vectors(family, device="cpu"):
        assert tensor.task_vectors.shape == (3, *base[tensor.name].shape)
        torch.testing.assert_close(
            tensor.task_vectors[1], finetuned[tensor.name] - base[tensor.name]
        )


def test_task_names_from_list_of_paths(tmp_path):
    base_dir, task_dirs = write_family(tmp_path, tasks=2)
    family = load_family(base_dir, list(task_dirs.values()))
    assert family.task_names == ["task0", "task1"]


def test_include_exclude(tmp_path):
    base_dir, task_dirs = write_family(tmp_path)
    family = load_family(base_dir, task_dirs, include=r"encoder", exclude=r"LayerNorm|bias")
    assert all("encoder" in name and "LayerNorm" not in name for name in family.tensor_names)
    assert "embeddings.word_embeddings.weight" in family.skipped
    with pytest.raises(FamilyError, match="not a valid regular expression"):
        load_family(base_dir, task_dirs, include="(")


def _rewrite(path, change):
    state = load_file(str(path))
    change(state)
    save_file(state, str(path))


def test_missing_and_extra_keys_are_named(tmp_path):
    base_dir, task_dirs = write_family(tmp_path)
    _rewrite(
        task_dirs["task1"] / "model.safetensors",
        lambda s: (s.pop("encoder.layer.1.output.dense.weight"), s.update(extra=torch.zeros(2))),
    )
    with pytest.raises(FamilyError) as error:
        load_family(base_dir, task_dirs)
    message = str(error.value)
    assert (
        "task1" in message
        and "encoder.layer.1.output.dense.weight" in message
        and "extra" in message
    )
    assert "keys='common'" in message
    family = load_family(base_dir, task_dirs, keys="common")
    assert "encoder.layer.1.output.dense.weight" not in family.tensor_names
    assert "missing" in family.skipped["encoder.layer.1.output.dense.weight"]


def test_shape_mismatch_is_named(tmp_path):
    base_dir, task_dirs = write_family(tmp_path)
    _rewrite(
        task_dirs["task0"] / "model.safetensors",
        lambda s: s.update({"embeddings.word_embeddings.weight": torch.zeros(13, 8)}),
    )
    with pytest.raises(
        FamilyError, match=r"embeddings.word_embeddings.weight \(13, 8\) vs base \(12, 8\)"
    ):
        load_family(base_dir, task_dirs)
    family = load_family(base_dir, task_dirs, keys="common")
    assert "shape differs" in family.skipped["embeddings.word_embeddings.weight"]


def test_prefix_difference_is_explained_and_aligned(tmp_path):
    base_dir, task_dirs = write_family(tmp_path, with_buffer=False)
    _rewrite(
        task_dirs["task2"] / "model.safetensors",
        lambda s: [s.update({"model." + k: s.pop(k)}) for k in list(s)],
    )
    with pytest.raises(FamilyError, match="prefix 'model.'.*align_prefixes=True"):
        load_family(base_dir, task_dirs)
    family = load_family(base_dir, task_dirs, align_prefixes=True)
    assert (
        family.key_map["task2"]["encoder.layer.0.output.dense.weight"]
        == "model.encoder.layer.0.output.dense.weight"
    )
    assert len(family.tensor_names) == 9


def test_nan_in_a_task_is_named(tmp_path):
    base_dir, task_dirs = write_family(tmp_path)

    def poison(state):
        state["encoder.layer.0.output.dense.weight"][0, 0] = float("nan")

    _rewrite(task_dirs["task1"] / "model.safetensors", poison)
    family = load_family(base_dir, task_dirs)
    with pytest.raises(ValueError, match="encoder.layer.0.output.dense.weight"):
        list(iter_task_vectors(family, device="cpu"))


def test_explicit_cuda_without_gpu_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    base_dir, task_dirs = write_family(tmp_path)
    with pytest.raises(ValueError, match="no CUDA device"):
        next(iter_task_vectors(load_family(base_dir, task_dirs), device="cuda"))


def test_walk_memory_is_bounded_by_tensors_not_models(tmp_path):
    """4 fine-tuned models of 160 MB each are walked with a few tensors' worth of memory."""
    shapes = {f"layers.{i}.mlp.up_proj.weight": (1024, 2048) for i in range(20)}  # 8 MiB each
    base_dir, task_dirs = write_family(tmp_path, tasks=4, with_buffer=False, shapes=shapes)
    script = textwrap.dedent(
        f"""
        import json, threading, time
        from tadrop.task_vectors import load_family, iter_task_vectors
        def anon():
            for line in open('/proc/self/status'):
                if line.startswith('RssAnon'):
                    return int(line.split()[1]) * 1024
        peak = [0]; done = [False]
        def watch():
            while not done[0]:
                peak[0] = max(peak[0], anon()); time.sleep(0.001)
        family = load_family({str(base_dir)!r}, {json.dumps({k: str(v) for k, v in task_dirs.items()})})
        start = anon(); thread = threading.Thread(target=watch); thread.start()
        total = 0.0
        for tensor in iter_task_vectors(family, device='cpu'):
            total += float(tensor.task_vectors.abs().sum())
        done[0] = True; thread.join()
        print(json.dumps({{'growth': peak[0] - start, 'total': total}}))
        """
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    growth = json.loads(output.stdout.strip().splitlines()[-1])["growth"]
    family_bytes = 5 * 20 * 8 * 2**20  # 800 MiB on disk
    tensor_bytes = 8 * 2**20
    # a few times (K + 2) tensors: the stack being filled, the one the caller holds, temporaries
    assert growth < 4 * (4 + 2) * tensor_bytes, (
        f"walk grew anonymous memory by {growth / 2**20:.0f} MiB"
    )
    assert growth < family_bytes / 3

"""Reading checkpoints: every format round-trips, reads are lazy, returned tensors are owned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from io_fixtures import (
    assert_same_tensors,
    peak_rss_kib,
    reset_peak_rss,
    save_hf_shards,
    small_state_dict,
)
from safetensors.torch import save_file

from tadrop.io import CheckpointError, check_finite, open_checkpoint, tensor_files

# --- safetensors --------------------------------------------------------------------------------


def test_single_safetensors_file_round_trips(tmp_path):
    state = small_state_dict()
    save_file(state, tmp_path / "weights.safetensors", metadata={"note": "hi"})
    with open_checkpoint(tmp_path / "weights.safetensors") as checkpoint:
        assert checkpoint.format == "safetensors"
        assert checkpoint.source == tmp_path / "weights.safetensors"
        assert checkpoint.metadata == {"note": "hi"}
        assert checkpoint.aux_dir is None  # no config.json beside it
        assert_same_tensors(checkpoint, state)


def test_hf_folder_with_model_safetensors(tmp_path):
    state = small_state_dict()
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text("{}")
    checkpoint = open_checkpoint(tmp_path)
    assert (checkpoint.format, checkpoint.source, checkpoint.aux_dir) == (
        "safetensors",
        tmp_path,
        tmp_path,
    )
    assert_same_tensors(checkpoint, state)


def test_sharded_folder_uses_the_index_and_keeps_shard_order(tmp_path):
    state = small_state_dict()
    names = list(state)
    shards = [{n: state[n] for n in names[:3]}, {n: state[n] for n in names[3:]}]
    save_hf_shards(tmp_path, shards)
    checkpoint = open_checkpoint(tmp_path)
    assert checkpoint.format == "safetensors-sharded"
    assert checkpoint.metadata["total_size"] == str(
        sum(t.numel() * t.element_size() for t in state.values())
    )
    assert checkpoint.file_of(names[4]).name == "model-00002-of-00002.safetensors"
    assert set(checkpoint.keys()[:3]) == set(names[:3])  # first shard's tensors first
    assert_same_tensors(checkpoint, state)


def test_index_file_path_opens_the_sharded_folder(tmp_path):
    state = small_state_dict()
    save_hf_shards(tmp_path, [dict(list(state.items())[:2]), dict(list(state.items())[2:])])
    checkpoint = open_checkpoint(tmp_path / "model.safetensors.index.json")
    assert checkpoint.source == tmp_path
    assert_same_tensors(checkpoint, state)


def test_complete_shards_without_index_are_read(tmp_path):
    state = small_state_dict()
    save_hf_shards(
        tmp_path, [dict(list(state.items())[:4]), dict(list(state.items())[4:])], index=False
    )
    assert_same_tensors(open_checkpoint(tmp_path), state)


def test_lone_weights_file_in_a_folder(tmp_path):
    state = small_state_dict()
    save_file(state, tmp_path / "diffusion_pytorch_model.safetensors")
    torch.save(state, tmp_path / "training_args.bin")  # safetensors wins over torch files
    (tmp_path / "tokenizer.json").write_text("{}")
    checkpoint = open_checkpoint(tmp_path)
    assert checkpoint.source == tmp_path / "diffusion_pytorch_model.safetensors"
    assert checkpoint.aux_dir == tmp_path  # a tokenizer file lies beside it
    assert_same_tensors(checkpoint, state)


def test_base_argument_is_ignored_for_full_models(tmp_path):
    save_file({"w": torch.ones(1)}, tmp_path / "a.safetensors")
    save_file({"w": torch.zeros(1)}, tmp_path / "b.safetensors")
    base = open_checkpoint(tmp_path / "a.safetensors")
    assert torch.equal(
        open_checkpoint(tmp_path / "b.safetensors", base=base).get("w"), torch.zeros(1)
    )


# --- torch pickles ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth"])
def test_torch_file_round_trips(tmp_path, suffix):
    state = small_state_dict()
    torch.save(state, tmp_path / f"weights{suffix}")
    checkpoint = open_checkpoint(tmp_path / f"weights{suffix}")
    assert checkpoint.format == "torch"
    assert_same_tensors(checkpoint, state)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": sd, "epoch": 3, "optimizer": {"state": {}}},
        lambda sd: {"model": sd, "step": 10},
        lambda sd: {"module": sd},
        lambda sd: {"model": {"module": sd}},
    ],
    ids=["state_dict", "model", "module", "model-module"],
)
def test_torch_wrappers_are_unwrapped(tmp_path, wrap):
    state = small_state_dict()
    torch.save(wrap(state), tmp_path / "ckpt.pt")
    assert_same_tensors(open_checkpoint(tmp_path / "ckpt.pt"), state)


def test_nested_dicts_of_tensors_are_flattened_with_dots(tmp_path):
    a, b, c = torch.ones(2), torch.zeros(3), torch.arange(4)
    torch.save({"encoder": {"layer": {"w": a}, "b": b}, "head.w": c}, tmp_path / "nested.pt")
    assert_same_tensors(
        open_checkpoint(tmp_path / "nested.pt"), {"encoder.layer.w": a, "encoder.b": b, "head.w": c}
    )


def test_a_tensor_beside_a_wrapper_key_means_no_unwrapping(tmp_path):
    inner, head = torch.ones(2), torch.zeros(2)
    torch.save({"model": {"w": inner}, "head": head}, tmp_path / "m.pt")
    assert_same_tensors(open_checkpoint(tmp_path / "m.pt"), {"model.w": inner, "head": head})


def test_legacy_non_zip_torch_file_is_read_without_mmap(tmp_path):
    state = small_state_dict()
    torch.save(state, tmp_path / "old.bin", _use_new_zipfile_serialization=False)
    assert_same_tensors(open_checkpoint(tmp_path / "old.bin"), state)


def test_hf_folder_with_pytorch_model_bin_and_sharded_index(tmp_path):
    state = small_state_dict()
    single = tmp_path / "single"
    single.mkdir()
    torch.save(state, single / "pytorch_model.bin")
    assert_same_tensors(open_checkpoint(single), state)

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    names = list(state)
    weight_map = {}
    for number, part in enumerate([names[:2], names[2:]], start=1):
        shard_name = f"pytorch_model-0000{number}-of-00002.bin"
        torch.save({n: state[n] for n in part}, sharded / shard_name)
        weight_map.update(dict.fromkeys(part, shard_name))
    (sharded / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    checkpoint = open_checkpoint(sharded)
    assert checkpoint.format == "torch-sharded"
    assert_same_tensors(checkpoint, state)


def test_tied_torch_tensors_come_back_as_independent_copies(tmp_path):
    shared = torch.randn(3, 3)
    torch.save({"embed.weight": shared, "lm_head.weight": shared}, tmp_path / "tied.bin")
    checkpoint = open_checkpoint(tmp_path / "tied.bin")
    first = checkpoint.get("embed.weight")
    first.add_(100.0)
    assert torch.equal(checkpoint.get("lm_head.weight"), shared)
    assert torch.equal(checkpoint.get("embed.weight"), shared)


def test_safetensors_get_returns_a_tensor_the_caller_owns(tmp_path):
    save_file({"w": torch.ones(4)}, tmp_path / "w.safetensors")
    checkpoint = open_checkpoint(tmp_path / "w.safetensors")
    checkpoint.get("w").mul_(0)
    assert torch.equal(checkpoint.get("w"), torch.ones(4))


# --- laziness -----------------------------------------------------------------------------------


def test_shape_and_dtype_come_from_the_header_without_reading_data(tmp_path, monkeypatch):
    state = small_state_dict()
    save_file(state, tmp_path / "w.safetensors")
    checkpoint = open_checkpoint(tmp_path / "w.safetensors")
    handle = checkpoint._files[0]

    def refuse(*args, **kwargs):
        raise AssertionError("tensor data was read")

    monkeypatch.setattr(handle, "get", refuse)
    for name, tensor in state.items():
        assert checkpoint.shape(name) == tuple(tensor.shape)
        assert checkpoint.dtype(name) == tensor.dtype
        assert checkpoint.nbytes(name) == tensor.numel() * tensor.element_size()


def test_get_opens_only_the_shard_holding_the_tensor(tmp_path, monkeypatch):
    state = small_state_dict()
    names = list(state)
    save_hf_shards(tmp_path, [{n: state[n]} for n in names])  # one tensor per shard
    checkpoint = open_checkpoint(tmp_path)
    reads = []

    class SpyHandle:
        def __init__(self, path, **kwargs):
            self.path = Path(path)
            self.handle = real_safe_open(path, **kwargs)

        def get_tensor(self, name):
            reads.append((self.path.name, name))
            return self.handle.get_tensor(name)

    real_safe_open = tensor_files.safe_open
    monkeypatch.setattr(tensor_files, "safe_open", SpyHandle)
    assert torch.equal(checkpoint.get(names[2]), state[names[2]])
    assert reads == [("model-00003-of-00007.safetensors", names[2])]


def test_get_of_one_tensor_does_not_load_the_whole_checkpoint(tmp_path):
    """Peak memory while reading one tensor of a 96 MiB checkpoint stays near that tensor."""
    if not reset_peak_rss():
        pytest.skip("/proc/self/clear_refs is not writable here")
    big = 6 * 2**20  # float32 elements: 24 MiB per tensor, 4 shards = 96 MiB on disk
    generator = torch.Generator().manual_seed(0)
    shards = [{f"big.{i}": torch.randn(big, generator=generator)} for i in range(4)]
    shards[0]["small"] = torch.ones(16)
    save_hf_shards(tmp_path, shards)
    file_bytes = sum(p.stat().st_size for p in tmp_path.glob("*.safetensors"))
    del shards
    with open_checkpoint(tmp_path) as checkpoint:
        reset_peak_rss()
        before = peak_rss_kib()
        tensor = checkpoint.get("big.2")
        assert float(tensor.sum()) != 0.0  # touches every byte of this one tensor
        growth = (peak_rss_kib() - before) * 1024
    assert growth < 2.2 * big * 4  # this tensor (mapped, maybe copied) but no other
    assert growth < file_bytes / 2


# --- small contracts ----------------------------------------------------------------------------


def test_unknown_tensor_name_suggests_close_matches(tmp_path):
    save_file(small_state_dict(), tmp_path / "w.safetensors")
    checkpoint = open_checkpoint(tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=r"no tensor named 'embed\.weigth'.*'embed\.weight'"):
        checkpoint.get("embed.weigth")
    assert "embed.weight" in checkpoint and "nope" not in checkpoint
    assert len(checkpoint) == len(small_state_dict())


def test_reading_after_close_is_a_clear_error(tmp_path):
    save_file({"w": torch.ones(2)}, tmp_path / "w.safetensors")
    torch.save({"w": torch.ones(2)}, tmp_path / "w.pt")
    for path in (tmp_path / "w.safetensors", tmp_path / "w.pt"):
        checkpoint = open_checkpoint(path)
        checkpoint.close()
        with pytest.raises(CheckpointError, match="after close"):
            checkpoint.get("w")


def test_check_finite_names_tensor_source_and_count():
    check_finite("ok", torch.ones(3), "m.safetensors")
    check_finite("ints", torch.arange(3), "m.safetensors")
    bad = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 2.0])
    with pytest.raises(CheckpointError, match=r"m\.safetensors: tensor 'w' has 3 NaN/Inf value"):
        check_finite("w", bad, Path("m.safetensors"))
    with pytest.raises(CheckpointError, match="1 NaN/Inf"):
        check_finite("h", torch.tensor([float("nan"), 1.0], dtype=torch.bfloat16), "x")

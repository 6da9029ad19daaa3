"""Bad checkpoints give a CheckpointError naming the file (and tensor) and leave inputs alone."""

from __future__ import annotations

import collections
import json
import re
import struct

import pytest
import torch
from io_fixtures import save_hf_shards, small_state_dict, snapshot
from safetensors.torch import save_file

from tadrop.io import CheckpointError, open_checkpoint


def assert_refused(path, *patterns):
    """open_checkpoint(path) fails with a message containing every pattern; path is unchanged."""
    before = snapshot(path) if path.exists() else {}
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(path)
    for pattern in patterns:
        assert re.search(pattern, str(info.value)), (pattern, str(info.value))
    assert (snapshot(path) if path.exists() else {}) == before
    return str(info.value)


def test_missing_file_or_folder(tmp_path):
    assert_refused(tmp_path / "nope.safetensors", re.escape(str(tmp_path / "nope.safetensors")))
    assert_refused(tmp_path / "no_folder", "no such file or folder")


def test_folder_without_model_file_lists_what_it_found(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    assert_refused(tmp_path, re.escape(str(tmp_path)), "config.json, notes.txt, sub/")


def test_folder_with_two_loose_weight_files_is_ambiguous(tmp_path):
    save_file({"w": torch.ones(1)}, tmp_path / "a.safetensors")
    save_file({"w": torch.ones(1)}, tmp_path / "b.safetensors")
    torch.save({"w": torch.ones(1)}, tmp_path / "c.pt")  # not picked as "the" weights file
    assert_refused(tmp_path, "a.safetensors, b.safetensors, c.pt")


def test_unrecognised_file_extension(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x00" * 16)
    assert_refused(tmp_path / "model.onnx", "model.onnx", r"\.safetensors, \.bin")


def test_index_listing_a_missing_shard(tmp_path):
    state = small_state_dict()
    paths = save_hf_shards(tmp_path, [dict(list(state.items())[:3]), dict(list(state.items())[3:])])
    paths[1].unlink()
    assert_refused(tmp_path, "model.safetensors.index.json", "model-00002-of-00002.safetensors")


def test_index_that_is_not_json(tmp_path):
    save_hf_shards(tmp_path, [{"w": torch.ones(1)}])
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    assert_refused(tmp_path, "model.safetensors.index.json", "not valid JSON")


def test_index_claiming_a_tensor_its_shard_lacks(tmp_path):
    save_hf_shards(tmp_path, [{"a": torch.ones(1)}, {"b": torch.ones(1)}])
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["c"] = "model-00001-of-00002.safetensors"
    index_path.write_text(json.dumps(index))
    assert_refused(tmp_path, "'c'", "model-00001-of-00002.safetensors")


def test_index_shard_name_with_a_path_is_refused(tmp_path):
    save_hf_shards(tmp_path, [{"a": torch.ones(1)}])
    index_path = tmp_path / "model.safetensors.index.json"
    index_path.write_text(json.dumps({"weight_map": {"a": "../elsewhere.safetensors"}}))
    assert_refused(tmp_path, "not a plain file name")


def test_same_tensor_in_two_shards(tmp_path):
    save_hf_shards(tmp_path, [{"a": torch.ones(1), "dup": torch.ones(2)}, {"dup": torch.zeros(2)}])
    assert_refused(
        tmp_path, "'dup'", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    )


def test_incomplete_unindexed_shards(tmp_path):
    paths = save_hf_shards(tmp_path, [{"a": torch.ones(1)}, {"b": torch.ones(1)}], index=False)
    paths[0].unlink()
    assert_refused(tmp_path, "missing: \\[1\\]")


# --- damaged safetensors files ------------------------------------------------------------------


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"layer.weight": torch.randn(8, 8), "layer.bias": torch.randn(8)}, path)
    return path


def test_truncated_safetensors_data(good_file):
    good_file.write_bytes(good_file.read_bytes()[:-40])
    assert_refused(good_file, re.escape(str(good_file)), "'layer", "truncated")


def test_truncated_safetensors_header(good_file):
    good_file.write_bytes(good_file.read_bytes()[:20])
    assert_refused(good_file, re.escape(str(good_file)), "header claims \\d+ bytes")


def test_tiny_file(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"abc")
    assert_refused(tmp_path / "x.safetensors", "only 3 bytes")


def _rewrite_header(path, edit):
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = edit(data[8 : 8 + size])
    path.write_bytes(struct.pack("<Q", len(header)) + header + data[8 + size :])


def test_header_with_bad_json(good_file):
    _rewrite_header(good_file, lambda header: header.replace(b'"', b"'", 1))
    assert_refused(good_file, re.escape(str(good_file)), "not valid JSON")


def test_data_offsets_beyond_the_end_of_the_file(good_file):
    def push_offsets(header):
        parsed = json.loads(header)
        parsed["layer.weight"]["data_offsets"] = [10_000, 10_256]
        return json.dumps(parsed).encode()

    _rewrite_header(good_file, push_offsets)
    assert_refused(good_file, "'layer.weight'", "ends at data byte 10256")


def test_data_size_not_matching_shape(good_file):
    def grow_shape(header):
        parsed = json.loads(header)
        parsed["layer.bias"]["shape"] = [9]
        return json.dumps(parsed).encode()

    _rewrite_header(good_file, grow_shape)
    assert_refused(good_file, "'layer.bias'", "spans 32 bytes, not 36")


def test_overlapping_tensors_caught_by_safetensors_still_name_the_file(good_file):
    def overlap(header):
        parsed = json.loads(header)
        parsed["layer.bias"]["data_offsets"] = parsed["layer.weight"]["data_offsets"][:1] * 2
        parsed["layer.bias"]["data_offsets"][1] += 32
        return json.dumps(parsed).encode()

    _rewrite_header(good_file, overlap)
    assert_refused(good_file, re.escape(str(good_file)), "safetensors refused")


# --- torch pickles ------------------------------------------------------------------------------


class NotATensor:
    pass


def test_pickle_with_python_objects_is_refused_with_conversion_advice(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weight": torch.ones(2), "extra": NotATensor()}, path)
    message = assert_refused(path, re.escape(str(path)), "non-tensor Python objects", "NotATensor")
    assert "save_file" in message and "weights_only=False" in message


def test_pickle_with_plain_values_names_the_entry(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weight": torch.ones(2), "lr": 0.1}, path)
    assert_refused(path, re.escape(str(path)), "entry 'lr' is a float, not a tensor")


def test_pickle_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "model.pt"
    torch.save([torch.ones(2)], path)
    assert_refused(path, "holds a list")


def test_pickle_with_non_string_keys(tmp_path):
    path = tmp_path / "optimizer.pt"
    torch.save(collections.OrderedDict({0: torch.ones(1)}), path)
    assert_refused(path, "int key")


def test_empty_pickle(tmp_path):
    torch.save({}, tmp_path / "empty.pt")
    assert_refused(tmp_path / "empty.pt", "holds no tensors")


@pytest.mark.parametrize("content", [b"", b"garbage" * 10], ids=["empty", "garbage"])
def test_garbage_torch_file(tmp_path, content):
    (tmp_path / "model.bin").write_bytes(content)
    assert_refused(tmp_path / "model.bin", "cannot be read as a PyTorch checkpoint")


def test_truncated_torch_zip(tmp_path):
    path = tmp_path / "model.bin"
    torch.save(small_state_dict(), path)
    path.write_bytes(path.read_bytes()[:300])
    assert_refused(path, re.escape(str(path)), "truncated, corrupt")

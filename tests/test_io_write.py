"""Writing checkpoints: HF layout, lazy sharding, provenance, atomicity, input protection."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from io_fixtures import assert_same_tensors, small_state_dict, snapshot
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import tadrop.io.writer as writer
from tadrop.io import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_text,
    open_checkpoint,
    save_state_dict,
    write_checkpoint,
)


def leftovers(folder):
    """Hidden temporary or trash entries the writer may have left in `folder`."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_small_model_becomes_one_model_safetensors(tmp_path):
    state = small_state_dict()
    out = write_checkpoint(state.items(), tmp_path / "out")
    assert sorted(os.listdir(out)) == ["model.safetensors"]
    assert_same_tensors(open_checkpoint(out), state)
    loaded = load_file(out / "model.safetensors")  # safetensors' own reader agrees
    assert all(torch.equal(loaded[name], tensor) for name, tensor in state.items())
    assert list(open_checkpoint(out).keys()) == list(state)  # the given order is kept
    assert leftovers(tmp_path) == []


def test_large_model_is_sharded_with_a_hugging_face_index(tmp_path):
    state = {f"layers.{i}.weight": torch.full((64,), float(i)) for i in range(5)}  # 256 B each
    out = write_checkpoint(state.items(), tmp_path / "out", max_shard_bytes=600)
    names = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert sorted(os.listdir(out)) == [*names, "model.safetensors.index.json"]
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == 5 * 256
    assert index["weight_map"] == {
        "layers.0.weight": names[0],
        "layers.1.weight": names[0],
        "layers.2.weight": names[1],
        "layers.3.weight": names[1],
        "layers.4.weight": names[2],
    }
    checkpoint = open_checkpoint(out)
    assert checkpoint.format == "safetensors-sharded"
    assert_same_tensors(checkpoint, state)


def test_a_tensor_bigger_than_the_shard_limit_gets_its_own_shard(tmp_path):
    state = {"small": torch.ones(2), "huge": torch.ones(100), "tail": torch.ones(2)}
    out = write_checkpoint(state.items(), tmp_path / "out", max_shard_bytes=64)
    weight_map = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(weight_map.values())) == 3
    assert_same_tensors(open_checkpoint(out), state)


def test_tensors_are_consumed_lazily_one_shard_at_a_time(tmp_path):
    out = tmp_path / "out"
    written_before = []

    def tensors():
        for i in range(4):
            temp_dirs = [p for p in tmp_path.iterdir() if p.name.startswith(".out.tadrop-tmp")]
            written_before.append(len(list(temp_dirs[0].glob("*.partial"))) if temp_dirs else 0)
            yield f"t{i}", torch.full((32,), float(i))  # 128 bytes: one tensor per shard

    write_checkpoint(tensors(), out, max_shard_bytes=128)
    # when tensor i is asked for, shard i - 1 is already on disk: earlier shards are not held
    assert written_before == [0, 0, 1, 2]


def test_provenance_metadata_is_written_to_every_shard(tmp_path):
    source = tmp_path / "in.safetensors"
    save_file({"w": torch.ones(1)}, source)
    out = write_checkpoint(
        [("a", torch.ones(64)), ("b", torch.ones(64))],
        tmp_path / "out",
        max_shard_bytes=256,
        metadata={"method": "ties", "params": {"k": 0.2}, "inputs": 2},
        input_paths=[source],
    )
    for shard in sorted(out.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as handle:
            metadata = handle.metadata()
        assert metadata["format"] == "pt"
        assert metadata["method"] == "ties"
        assert json.loads(metadata["params"]) == {"k": 0.2}
        assert metadata["inputs"] == "2"
        assert json.loads(metadata["input_paths"]) == [str(source)]
        assert metadata["tadrop_version"]
    assert open_checkpoint(out).metadata["method"] == "ties"


def test_aux_files_are_copied_and_weights_are_not(tmp_path):
    source = tmp_path / "base"
    (source / "1_Pooling").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "vocab.txt", "spiece.model", "modules.json"):
        (source / name).write_text(name)
    (source / "modules.json").write_text(json.dumps([{"path": ""}, {"path": "1_Pooling"}]))
    (source / "1_Pooling" / "config.json").write_text("{}")
    (source / "README.md").write_text("card")
    save_file({"w": torch.ones(1)}, source / "model.safetensors")
    out = write_checkpoint([("w", torch.zeros(1))], tmp_path / "out", aux_dir=source)
    assert sorted(os.listdir(out)) == sorted(
        [
            "1_Pooling",
            "config.json",
            "model.safetensors",
            "modules.json",
            "spiece.model",
            "tokenizer.json",
            "vocab.txt",
        ]
    )
    assert (out / "vocab.txt").read_text() == "vocab.txt"
    assert (out / "1_Pooling" / "config.json").is_file()
    assert torch.equal(open_checkpoint(out).get("w"), torch.zeros(1))


def test_dtype_cast_non_contiguous_and_shared_storage(tmp_path):
    shared = torch.randn(4, 6)
    state = {
        "transposed": shared.T,  # non-contiguous view
        "rows": shared[1:3],  # a view into the same storage
        "tied": shared,
        "ids": torch.arange(3),
    }
    out = write_checkpoint(state.items(), tmp_path / "out", dtype=torch.bfloat16)
    checkpoint = open_checkpoint(out)
    assert checkpoint.dtype("transposed") == torch.bfloat16
    assert checkpoint.dtype("ids") == torch.int64  # only floating tensors are cast
    assert torch.equal(checkpoint.get("transposed"), shared.T.to(torch.bfloat16))
    assert torch.equal(checkpoint.get("rows"), shared[1:3].to(torch.bfloat16))
    assert torch.equal(checkpoint.get("tied"), shared.to(torch.bfloat16))


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ([("a", torch.ones(1)), ("a", torch.ones(1))], "'a' was given twice"),
        ([], "no tensors to write"),
        ([("a", [1.0])], "got a list"),
        ([("", torch.ones(1))], "not allowed"),
    ],
    ids=["duplicate", "empty", "not-a-tensor", "empty-name"],
)
def test_bad_tensor_streams_leave_nothing_behind(tmp_path, tensors, message):
    with pytest.raises(CheckpointError, match=message):
        write_checkpoint(tensors, tmp_path / "out")
    assert os.listdir(tmp_path) == []


# --- atomicity and overwrite --------------------------------------------------------------------


@pytest.fixture
def old_output(tmp_path):
    out = write_checkpoint([("old", torch.ones(3))], tmp_path / "out")
    return out, snapshot(out)


def test_existing_output_needs_overwrite(tmp_path, old_output):
    out, before = old_output
    with pytest.raises(CheckpointError, match=r"already exists.*overwrite=True.*--overwrite"):
        write_checkpoint([("new", torch.zeros(3))], out)
    assert snapshot(out) == before


def test_overwrite_replaces_the_old_folder_whole(tmp_path, old_output):
    out, _ = old_output
    (out / "stale.txt").write_text("from the old run")
    write_checkpoint([("new", torch.zeros(3))], out, overwrite=True)
    assert sorted(os.listdir(out)) == ["model.safetensors"]
    assert open_checkpoint(out).keys() == ["new"]
    assert leftovers(tmp_path) == []


def test_disk_full_midway_keeps_the_old_output_and_removes_the_temp_folder(
    tmp_path, old_output, monkeypatch
):
    out, before = old_output
    real_write = writer.write_safetensors_file
    calls = []

    def write_then_fill_the_disk(path, tensors, metadata):
        calls.append(path)
        if len(calls) == 2:  # the second shard: half written, then the disk is full
            path.write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, tensors, metadata)

    monkeypatch.setattr(writer, "write_safetensors_file", write_then_fill_the_disk)
    state = {f"t{i}": torch.ones(64) for i in range(3)}
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        write_checkpoint(state.items(), out, max_shard_bytes=256, overwrite=True)
    assert str(info.value).startswith(f"{out}: could not write the output")
    assert "free space" in str(info.value) and ".tadrop-tmp" not in str(info.value)
    assert len(calls) == 2
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


def test_interrupt_while_producing_tensors_leaves_no_trace(tmp_path, old_output):
    out, before = old_output

    def interrupted():
        yield "a", torch.ones(64)
        yield "b", torch.ones(64)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(interrupted(), out, max_shard_bytes=256, overwrite=True)
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


def test_failure_of_the_final_rename_restores_the_old_folder(tmp_path, old_output, monkeypatch):
    out, before = old_output
    real_rename = os.rename

    def rename(source, target):
        if Path(target) == out and ".tadrop-tmp" in Path(source).name:  # new folder -> out
            raise OSError(errno.EIO, "I/O error")
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError):
        write_checkpoint([("new", torch.zeros(3))], out, overwrite=True)
    monkeypatch.undo()
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


def test_output_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(CheckpointError, match="is a file"):
        write_checkpoint([("a", torch.ones(1))], tmp_path / "out", overwrite=True)
    assert (tmp_path / "out").read_text() == "a file"


# --- protecting the inputs ----------------------------------------------------------------------


@pytest.fixture
def input_folder(tmp_path):
    folder = tmp_path / "finetuned"
    folder.mkdir()
    save_file(small_state_dict(), folder / "model.safetensors")
    (folder / "config.json").write_text("{}")
    return folder


@pytest.mark.parametrize("where", ["same", "inside"])
def test_writing_into_an_input_folder_is_refused(tmp_path, input_folder, where):
    out = input_folder if where == "same" else input_folder / "merged"
    before = snapshot(input_folder)
    with pytest.raises(CheckpointError, match=str(input_folder)):
        write_checkpoint([("a", torch.ones(1))], out, input_paths=[input_folder], overwrite=True)
    assert snapshot(input_folder) == before
    assert leftovers(input_folder) == [] and leftovers(tmp_path) == []


def test_replacing_a_folder_that_contains_an_input_is_refused(tmp_path, input_folder):
    before = snapshot(input_folder)
    with pytest.raises(CheckpointError, match="contains"):
        write_checkpoint(
            [("a", torch.ones(1))],
            tmp_path,
            input_paths=[input_folder / "model.safetensors"],
            overwrite=True,
        )
    assert snapshot(input_folder) == before


def test_output_equal_to_an_input_file_is_refused(tmp_path):
    source = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(1)}, source)
    before = snapshot(source)
    with pytest.raises(CheckpointError, match="is \\(or contains\\) the input"):
        write_checkpoint([("w", torch.ones(1))], source, input_paths=[source], overwrite=True)
    assert snapshot(source) == before


def test_inside_an_input_folder_allowed_on_request_and_checkpoints_count_as_inputs(
    input_folder,
):
    checkpoint = open_checkpoint(input_folder)
    out = write_checkpoint(
        ((name, checkpoint.get(name)) for name in checkpoint.keys()),
        input_folder / "merged",
        input_paths=[checkpoint],
        allow_inside_inputs=True,
    )
    assert_same_tensors(open_checkpoint(out), small_state_dict())
    with pytest.raises(CheckpointError, match="inside the input folder"):
        write_checkpoint([("a", torch.ones(1))], input_folder / "again", input_paths=[checkpoint])


def test_output_beside_an_input_file_is_fine(tmp_path):
    source = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(1)}, source)
    write_checkpoint([("w", torch.ones(1))], tmp_path / "merged", input_paths=[source])
    assert (tmp_path / "merged" / "model.safetensors").is_file()


# --- small atomic writers -----------------------------------------------------------------------


def test_atomic_write_text_and_bytes(tmp_path):
    target = tmp_path / "deep" / "report.md"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    atomic_write_bytes(tmp_path / "blob.bin", b"\x00\x01")
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01"
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "deep") == []


def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "table.csv"
    atomic_write_text(target, "old")

    def fail(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(CheckpointError, match=f"{target}: could not write the output"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_save_state_dict_round_trips_and_replaces_atomically(tmp_path, monkeypatch):
    state = small_state_dict()
    path = save_state_dict(state, tmp_path / "w.safetensors", metadata={"task": "sst2"})
    assert_same_tensors(open_checkpoint(path), state)
    assert open_checkpoint(path).metadata["task"] == "sst2"
    before = snapshot(path)

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "write_safetensors_file", fail)
    with pytest.raises(CheckpointError, match="No space left"):
        save_state_dict({"other": torch.ones(1)}, path)
    assert snapshot(path) == before
    assert leftovers(tmp_path) == []

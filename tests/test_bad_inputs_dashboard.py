"""Catalogue: files the dashboard must not read, copy or replace (issue 10).

Every file the dashboard opens (a weight file, each shard, the shard index, an adapter config)
or copies into an export (config and tokenizer files) must resolve inside the data root; a
symlink leading out is refused with a message naming it. Uploads never leave the root and
never replace a file. Each row also checks that nothing outside the root was read into an
output and that the inputs are unchanged.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from io_fixtures import save_hf_shards, snapshot, write_adapter
from safetensors.torch import save_file

from dashboard import paths, uploads
from dashboard.paths import PathRefused
from dashboard.sources import FamilySource, open_family
from tadrop.io import write_checkpoint
from tadrop.io.confine import OutsideRootError

TENSORS = {"layer.weight": torch.ones(2, 2)}


@pytest.fixture
def layout(tmp_path):
    """root/ (the data root) with a base and a task model; outside/ with the same files."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    for folder in (root / "base", root / "task", outside):
        folder.mkdir(parents=True)
        save_file(TENSORS, folder / "model.safetensors")
        (folder / "config.json").write_text("{}")
    (outside / "tokenizer.json").write_text('{"secret": true}')
    return root.resolve(), outside.resolve()


def family_source(root: Path, base: Path, task: Path) -> FamilySource:
    return FamilySource(
        label="mine", base=str(base), finetuned=(str(task),), data_roots=(str(root),)
    )


def link_weight_file(root: Path, outside: Path) -> Path:
    (root / "task" / "model.safetensors").unlink()
    (root / "task" / "model.safetensors").symlink_to(outside / "model.safetensors")
    return root / "task" / "model.safetensors"


def link_one_shard(root: Path, outside: Path) -> Path:
    shards = save_hf_shards(root / "sharded", [TENSORS, {"other.weight": torch.ones(2)}])
    save_file({"other.weight": torch.ones(2)}, outside / "shard.safetensors")
    shards[1].unlink()
    shards[1].symlink_to(outside / "shard.safetensors")
    save_hf_shards(root / "base2", [TENSORS, {"other.weight": torch.zeros(2)}])
    return shards[1]


def link_shard_index(root: Path, outside: Path) -> Path:
    save_hf_shards(root / "sharded", [TENSORS])
    index = root / "sharded" / "model.safetensors.index.json"
    (outside / index.name).write_text(index.read_text())
    index.unlink()
    index.symlink_to(outside / index.name)
    return index


def link_adapter_config(root: Path, outside: Path) -> Path:
    pair = {
        "base_model.model.layer.lora_A.weight": torch.ones(1, 2),
        "base_model.model.layer.lora_B.weight": torch.ones(2, 1),
    }
    adapter = write_adapter(root / "adapter", pair, r=1, lora_alpha=1)
    (outside / "adapter_config.json").write_text((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").unlink()
    (adapter / "adapter_config.json").symlink_to(outside / "adapter_config.json")
    return adapter / "adapter_config.json"


# (case, how the inputs are linked out, which models are loaded as (base, task))
LOAD_CASES: list[tuple[str, Callable[[Path, Path], Path], tuple[str, str]]] = [
    ("weight file linked outside", link_weight_file, ("base", "task")),
    ("one shard linked outside", link_one_shard, ("base2", "sharded")),
    ("shard index linked outside", link_shard_index, ("base", "sharded")),
    ("adapter config linked outside", link_adapter_config, ("base", "adapter")),
]


@pytest.mark.parametrize(
    ("case", "link", "models"), LOAD_CASES, ids=[case for case, _, _ in LOAD_CASES]
)
def test_loading_a_file_linked_outside_the_root_is_refused(layout, case, link, models):
    root, outside = layout
    linked = link(root, outside)
    before = snapshot(root.parent)
    source = family_source(root, root / models[0], root / models[1])
    with pytest.raises(OutsideRootError) as info:
        open_family(source)
    message = str(info.value)
    assert str(linked) in message and "outside the data root" in message
    assert str(root) in message and "Copy the file into the data root" in message
    assert snapshot(root.parent) == before
    # The same family opens from the command line, where no data root applies.
    assert open_family(FamilySource(**{**source.__dict__, "data_roots": ()})).task_names


def test_export_does_not_copy_a_tokenizer_linked_outside_the_root(layout):
    root, outside = layout
    (root / "base" / "tokenizer.json").symlink_to(outside / "tokenizer.json")
    family = open_family(family_source(root, root / "base", root / "task"))  # weights: fine
    out = root / "merged"
    with paths.inside_roots([root]), pytest.raises(OutsideRootError) as info:
        write_checkpoint([("layer.weight", torch.zeros(2, 2))], out, aux_dir=family.base.aux_dir)
    assert str(root / "base" / "tokenizer.json") in str(info.value)
    assert not out.exists()
    assert sorted(p.name for p in root.iterdir()) == ["base", "task"]  # no staging left


def test_export_copies_aux_files_that_stay_inside_the_root(layout):
    root, _ = layout
    (root / "shared.json").write_text('{"tokenizer": 1}')
    (root / "base" / "tokenizer.json").symlink_to(root / "shared.json")
    with paths.inside_roots([root]):
        out = write_checkpoint([("w", torch.zeros(1))], root / "merged", aux_dir=root / "base")
    assert (out / "tokenizer.json").read_text() == '{"tokenizer": 1}'


def safetensors_bytes(tensor_bytes: bytes = b"") -> bytes:
    header = {"w": {"dtype": "U8", "shape": [len(tensor_bytes)], "data_offsets": [0, 4]}}
    encoded = json.dumps(header if tensor_bytes else {}).encode()
    return struct.pack("<Q", len(encoded)) + encoded + tensor_bytes


def test_uploads_folder_linked_outside_the_root_is_refused(layout):
    root, outside = layout
    (root / uploads.UPLOAD_FOLDER).symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    with pytest.raises(PathRefused, match="outside the data root"):
        uploads.save_upload(
            "m.safetensors",
            safetensors_bytes(),
            root / uploads.UPLOAD_FOLDER,
            limit_bytes=2**20,
            roots=[root],
        )
    assert snapshot(outside) == before


def test_a_second_upload_with_the_same_name_is_kept_beside_the_first(layout):
    root, _ = layout
    folder = root / uploads.UPLOAD_FOLDER
    first, second = safetensors_bytes(b"\1\1\1\1"), safetensors_bytes(b"\2\2\2\2")
    saved = [
        uploads.save_upload("my model.safetensors", data, folder, limit_bytes=2**20, roots=[root])
        for data in (first, second, first)
    ]
    assert [path.name for path in saved] == [
        "my_model.safetensors",
        "my_model-2.safetensors",
        "my_model-3.safetensors",
    ]
    assert saved[0].read_bytes() == first and saved[1].read_bytes() == second
    assert {p.name for p in folder.iterdir()} == {p.name for p in saved}  # no temp files


def test_an_upload_that_is_not_safetensors_names_itself_and_writes_nothing(layout):
    root, _ = layout
    with pytest.raises(PathRefused, match="bad.safetensors: not a valid safetensors file"):
        uploads.save_upload(
            "bad.safetensors", b"\x80\x02}q\x00." * 3, root / "up", limit_bytes=99, roots=[root]
        )
    assert not (root / "up").exists() or not any((root / "up").iterdir())

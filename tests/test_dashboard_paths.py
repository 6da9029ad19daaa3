"""The dashboard's data root: which user paths it reads and writes, and uploads."""

from __future__ import annotations

import json
import os
import struct

import pytest

from dashboard import paths, uploads
from dashboard.paths import PathRefused


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "root"
    (folder / "models" / "base").mkdir(parents=True)
    (folder / "models" / "base" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.safetensors").write_bytes(b"x")
    return folder.resolve()


def test_roots_come_from_the_flag_then_the_environment_then_the_defaults(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    flag = paths.data_roots(["--data-root", str(first), "--data-root", str(second)], {})
    assert flag == (first.resolve(), second.resolve())
    environment = {paths.ENV_DATA_ROOT: f"{first}{os.pathsep}{second}"}
    assert paths.data_roots([], environment) == (first.resolve(), second.resolve())
    assert paths.data_roots(["--data-root", str(first)], environment) == (first.resolve(),)
    defaults = paths.data_roots([], {}, default_roots=[second])
    assert defaults == (paths.Path.cwd().resolve(), second.resolve())


def test_relative_and_absolute_paths_inside_the_root_are_accepted(root):
    assert paths.resolve_user_path("models/base", [root]) == root / "models" / "base"
    assert paths.resolve_user_path(str(root / "models"), [root]) == root / "models"
    assert paths.resolve_user_path(str(root), [root]) == root


@pytest.mark.parametrize("text", ["../outside/secret.safetensors", "models/../../outside", ".."])
def test_dot_dot_is_refused(root, text):
    with pytest.raises(PathRefused, match=r"'\.\.'"):
        paths.resolve_user_path(text, [root])


def test_a_path_outside_every_root_is_refused(root):
    outside = root.parent / "outside" / "secret.safetensors"
    with pytest.raises(PathRefused, match="outside the data root"):
        paths.resolve_user_path(str(outside), [root])
    with pytest.raises(PathRefused, match="outside the data root"):
        paths.resolve_user_path("/etc/passwd", [root])


def test_a_symlink_leading_out_of_the_root_is_refused_and_one_inside_is_followed(root):
    (root / "escape").symlink_to(root.parent / "outside")
    with pytest.raises(PathRefused, match="symlink"):
        paths.resolve_user_path("escape/secret.safetensors", [root])
    (root / "alias").symlink_to(root / "models")
    assert paths.resolve_user_path("alias/base", [root]) == root / "models" / "base"


def test_empty_and_nul_paths_are_refused(root):
    for text in ["", "   ", "models\x00/base"]:
        with pytest.raises(PathRefused):
            paths.resolve_user_path(text, [root])


def test_output_path_must_be_inside_a_root_not_the_root_itself(root):
    assert paths.output_path("merged/run1", [root]) == root / "merged" / "run1"
    with pytest.raises(PathRefused, match="data root itself"):
        paths.output_path(".", [root])


def test_safe_file_names_keep_letters_digits_and_dots():
    assert (
        paths.safe_file_name("../../etc/x y.safetensors", suffix=".safetensors")
        == "x_y.safetensors"
    )
    assert paths.safe_file_name("#2 emr + tadrop", suffix="") == "2_emr_tadrop"
    assert paths.safe_file_name("...", suffix=".safetensors") == "upload.safetensors"


def test_find_checkpoints_lists_hf_folders_once_and_loose_files(root):
    shards = root / "models" / "sharded"
    shards.mkdir()
    for name in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]:
        (shards / name).write_bytes(b"x")
    (shards / "model.safetensors.index.json").write_text("{}")
    (root / "loose.pt").write_bytes(b"x")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.safetensors").write_bytes(b"x")
    (root / "escape").symlink_to(root.parent / "outside")
    found = paths.find_checkpoints([root])
    assert set(found) == {root / "models" / "base", shards, root / "loose.pt"}
    assert paths.display_path(shards, [root]) == "models/sharded"


def safetensors_bytes(header: dict) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded


def test_an_upload_is_written_under_its_safe_name(tmp_path):
    data = safetensors_bytes({"__metadata__": {}})
    saved = uploads.save_upload(
        "my model.safetensors", data, tmp_path / "up", limit_bytes=1000, roots=[tmp_path]
    )
    assert saved == tmp_path / "up" / "my_model.safetensors"
    assert saved.read_bytes() == data
    assert [path.name for path in (tmp_path / "up").iterdir()] == ["my_model.safetensors"]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("model.bin", safetensors_bytes({}), "only .safetensors"),
        ("model.safetensors", safetensors_bytes({}) + b"x" * 100, "over the upload limit"),
        ("model.safetensors", b"\x80\x03}q\x00.", "too short to be a safetensors file"),
        ("model.safetensors", struct.pack("<Q", 10**9) + b"{}", "header claims 1000000000"),
        ("model.safetensors", struct.pack("<Q", 4) + b"nope", "not valid JSON"),
        ("model.safetensors", struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    ],
)
def test_uploads_that_are_not_small_safetensors_files_are_refused(tmp_path, name, data, message):
    with pytest.raises(PathRefused, match=message):
        uploads.save_upload(name, data, tmp_path, limit_bytes=64, roots=[tmp_path])
    assert list(tmp_path.iterdir()) == []


def test_upload_limit_from_the_environment():
    assert paths.upload_limit_bytes({paths.ENV_UPLOAD_LIMIT_MB: "3"}) == 3 * 2**20
    with pytest.raises(PathRefused, match="whole number"):
        paths.upload_limit_bytes({paths.ENV_UPLOAD_LIMIT_MB: "lots"})


def _write(path, tensors: dict, metadata: dict | None = None):
    import torch
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.zeros(v) for k, v in tensors.items()}, str(path), metadata=metadata)


MODEL_TENSORS = {"encoder.layer.0.weight": (4, 4), "encoder.layer.0.bias": (4,)}


def test_pickers_leave_out_heads_and_offer_merged_outputs_apart(tmp_path):
    """Issue 15 bug 7: a merge's output is labelled as merged, never offered as a base or a
    fine-tuned model by default; head-only files (the zoo's heads/) are not models."""
    root = tmp_path.resolve()
    _write(root / "zoo" / "base" / "model.safetensors", MODEL_TENSORS, {"role": "base"})
    _write(root / "zoo" / "tasks" / "a" / "model.safetensors", MODEL_TENSORS, {"task": "a"})
    _write(
        root / "zoo" / "heads" / "a.safetensors",
        {"weight": (3, 4), "bias": (3,), "base_probe.weight": (3, 4), "base_probe.bias": (3,)},
    )
    _write(root / "classifier.safetensors", {"classifier.weight": (3, 4)})
    merged_meta = {"method": "ties", "input_paths": json.dumps([str(root / "zoo" / "base")])}
    _write(root / "merged" / "ties" / "model.safetensors", MODEL_TENSORS, merged_meta)
    _write(root / "merged" / "emr" / "a" / "model.safetensors", MODEL_TENSORS, merged_meta)
    _write(root / "merged" / "loose.safetensors", MODEL_TENSORS, merged_meta)

    models = paths.find_checkpoints([root])
    assert set(models) == {root / "zoo" / "base", root / "zoo" / "tasks" / "a"}
    merged = {
        root / "merged" / "ties",
        root / "merged" / "emr" / "a",
        root / "merged" / "loose.safetensors",
    }
    everything = paths.find_checkpoints([root], include_merged=True)
    assert set(everything) == set(models) | merged
    assert {path for path in everything if paths.is_merged_output(path)} == merged
    assert not any(paths.is_merged_output(path) for path in models)
    assert paths.checkpoint_label(root / "merged" / "ties", [root]).startswith("[merged]")
    assert paths.checkpoint_label(root / "zoo" / "base", [root]) == "zoo/base"


def test_unreadable_checkpoints_are_still_offered(root):
    """A file whose header cannot be read is listed; loading it reports the problem."""
    assert paths.find_checkpoints([root]) == [root / "models" / "base"]
    assert not paths.is_merged_output(root / "models" / "base")


def test_a_real_merge_output_is_recognised(tmp_path, monkeypatch):
    from family_fixtures import write_family

    from tadrop.cli import main

    root = tmp_path.resolve()
    write_family(root / "models", tasks=2)
    (root / "run.yaml").write_text(
        "base: models/base\nmodels: [models/task0, models/task1]\nmethod: ties\n"
        "output: {path: merged}\n"
    )
    monkeypatch.chdir(root)
    assert main(["merge", "run.yaml", "-q"]) == 0
    assert paths.is_merged_output(root / "merged")
    assert root / "merged" not in paths.find_checkpoints([root])
    assert root / "merged" in paths.find_checkpoints([root], include_merged=True)
    assert not paths.is_merged_output(root / "models" / "base")

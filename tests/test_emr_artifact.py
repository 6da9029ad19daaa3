"""EMR's compact artifact: written by a merge, expanded bit-exactly into any task model, with a
manifest whose sha256 guard changes; the CLI's ``merge`` and ``emr expand`` round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tadrop.cli import main
from tadrop.io import CheckpointError, open_checkpoint
from tadrop.merge import EMR, run_merge
from tadrop.merge.emr_artifact import ARTIFACT_DIR, expand, iter_task_model, save_artifact
from tadrop.sparsify import TADrop
from tadrop.task_vectors import load_family
from tests.family_fixtures import write_family

WIDE = {f"layer.{i}.weight": (96, 64) for i in range(4)} | {"layer.0.bias": (96,)}


def family_at(root: Path, tasks: int = 3, shapes: dict | None = None):
    base, task_dirs = write_family(root, tasks=tasks, **({"shapes": shapes} if shapes else {}))
    return load_family(base, task_dirs)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_expanded_task_models_equal_emrs_bit_for_bit(tmp_path, dtype):
    family = family_at(tmp_path / "models")
    result = run_merge(family, EMR(output="both"), TADrop(), device="cpu")
    out = result.save(tmp_path / "out", dtype=dtype)
    artifact = out / ARTIFACT_DIR
    for task in family.task_names:
        expected = result.model_for(task, dtype=dtype)
        with open_checkpoint(family.base.source) as base:
            rebuilt = dict(iter_task_model(artifact, task, base, dtype))
        assert list(rebuilt) == list(expected)
        for name, tensor in expected.items():
            assert rebuilt[name].dtype == tensor.dtype and torch.equal(rebuilt[name], tensor), name
        written = expand(artifact, task, tmp_path / f"expanded_{task}")
        on_disk = load_file(str(written / "model.safetensors"))
        task_model = load_file(str(out / task / "model.safetensors"))
        assert on_disk.keys() == task_model.keys()
        assert all(torch.equal(on_disk[name], task_model[name]) for name in task_model)


def test_compact_output_writes_only_the_artifact(tmp_path):
    family = family_at(tmp_path / "models")
    out = run_merge(family, EMR(output="compact"), device="cpu").save(tmp_path / "out")
    assert sorted(path.name for path in out.iterdir()) == [ARTIFACT_DIR]
    manifest = json.loads((out / ARTIFACT_DIR / "manifest.json").read_text())
    assert manifest["tasks"] == family.task_names
    assert set(manifest["files"]) == {"unified.safetensors", "masks.safetensors"}


def test_size_ratio_to_three_float32_task_models(tmp_path):
    # 4 x 96 x 64 + 96 = 24672 merged entries: unified float32 4 B + 3 masks of 1/8 B each
    # = 4.375 B per entry, against 3 models x 4 B = 12 B: 0.365, plus the safetensors headers
    family = family_at(tmp_path / "models", shapes=WIDE)
    result = run_merge(family, EMR(), device="cpu")
    save_artifact(result, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / ARTIFACT_DIR / "manifest.json").read_text())
    ratio = manifest["size_ratio"]
    assert 0.365 < ratio < 0.375, ratio


def test_changed_artifact_file_is_refused(tmp_path):
    family = family_at(tmp_path / "models")
    artifact = save_artifact(run_merge(family, EMR(), device="cpu"), tmp_path / "out")
    unified = artifact / "unified.safetensors"
    data = bytearray(unified.read_bytes())
    data[-1] ^= 1
    unified.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 differs"):
        expand(artifact, "task0", tmp_path / "x")
    with pytest.raises(CheckpointError, match="no manifest.json"):
        expand(tmp_path, "task0", tmp_path / "y")


def test_cli_merge_then_expand(tmp_path, capsys):
    write_family(tmp_path / "models", tasks=2)
    (tmp_path / "emr.yaml").write_text(
        "base: models/base\nmodels: [models/task0, models/task1]\nmethod: emr\n"
        "method_params: {output: both}\noutput: {path: merged}\n"
    )
    assert main(["merge", str(tmp_path / "emr.yaml"), "-q"]) == 0
    artifact = tmp_path / "merged" / ARTIFACT_DIR
    code = main(
        ["emr", "expand", str(artifact), "--task", "task1", "-o", str(tmp_path / "t1"), "--json"]
    )
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and 0 < payload["size_ratio"] < 1
    expanded = load_file(str(tmp_path / "t1" / "model.safetensors"))
    written = load_file(str(tmp_path / "merged" / "task1" / "model.safetensors"))
    assert all(torch.equal(expanded[name], written[name]) for name in written)
    assert main(["emr", "expand", str(artifact), "--task", "nope", "-o", str(tmp_path / "n")]) == 2


def test_writing_knows_no_method_and_has_no_import_circle():
    """save.py writes whatever a result's write_parts says (EMR overrides it): it imports no
    merge module, and nothing compares a method by class or name to decide how to write."""
    import ast

    root = Path(__file__).resolve().parents[1] / "tadrop"
    tree = ast.parse((root / "merge" / "save.py").read_text())
    imported = [
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    ]
    assert not [module for module in imported if module.startswith("tadrop.merge")], imported
    for path in [
        root / "merge" / "save.py",
        root / "merge" / "folder.py",
        root / "cli" / "merge.py",
    ]:
        text = path.read_text()
        assert "isinstance(method" not in text and "EMRResult" not in text, path
        assert '== "emr"' not in text, path


def test_dry_run_disk_estimate_follows_the_output():
    # 3 task models of 100 bytes; artifact: 50 float32 entries (200 B) + 3 x 50 bits (18 B)
    assert EMR().disk_bytes(100, 50, 3) == 300
    assert EMR(output="compact").disk_bytes(100, 50, 3) == 218
    assert EMR(output="both").disk_bytes(100, 50, 3) == 518
    with pytest.raises(ValueError, match="output='zip' is not allowed"):
        EMR(output="zip").validate()

"""Catalogue of bad inputs and faults at the checkpoint I/O layer (issue 10).

Each row: a case, what it does to the files under `in/` and the output `out/`, and the message
fragments the user must see. For every row the test also asserts that the inputs are unchanged
and that no file was left behind beside the output (no `.tadrop-tmp-*`, no `*.partial`).
"""

from __future__ import annotations

import errno
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from io_fixtures import snapshot, write_adapter
from safetensors.torch import save_file

import tadrop.io.writer as writer
from tadrop.io import CheckpointError, atomic_dir, open_checkpoint, write_checkpoint


class Payload:
    """Unpickling this runs os.getcwd: a harmless stand-in for code hidden in a checkpoint."""

    def __reduce__(self):
        return (os.getcwd, ())


@dataclass(frozen=True)
class Case:
    name: str
    # (inputs, output, monkeypatch): builds the inputs, returns the action that must fail
    prepare: Callable[[Path, Path, pytest.MonkeyPatch], Callable[[], object]]
    fragments: tuple[str, ...]  # "{in}" / "{out}" stand for the two folders


def _base(inputs: Path) -> Path:
    folder = inputs / "base"
    folder.mkdir(parents=True)
    save_file({"layer.weight": torch.ones(2, 2)}, folder / "model.safetensors")
    return folder


def _adapter(inputs: Path, **config: object) -> Callable[[], object]:
    pair = {
        "base_model.model.layer.lora_A.weight": torch.ones(1, 2),
        "base_model.model.layer.lora_B.weight": torch.ones(2, 1),
    }
    base, folder = _base(inputs), write_adapter(inputs / "adapter", pair, **config)
    return lambda: open_checkpoint(folder, base=open_checkpoint(base))


def _adapter_config_raw(inputs: Path, text: str) -> Callable[[], object]:
    base = _base(inputs)
    folder = write_adapter(inputs / "adapter", {"layer.weight": torch.ones(2, 2)})
    (folder / "adapter_config.json").write_text(text)
    return lambda: open_checkpoint(folder, base=open_checkpoint(base))


def _nonfinite(inputs: Path, out: Path, _) -> Callable[[], object]:
    tensors = [("ok", torch.ones(3)), ("layers.0.weight", torch.tensor([1.0, float("nan")]))]
    return lambda: write_checkpoint(iter(tensors), out, context="ties: scaling=nan")


def _beyond(dtype: torch.dtype, value: float, source: torch.dtype):
    def prepare(inputs: Path, out: Path, _) -> Callable[[], object]:
        tensors = [("head.weight", torch.tensor([1.0, value], dtype=source))]
        return lambda: write_checkpoint(
            iter(tensors), out, dtype=dtype, context="task_arithmetic: 1e9"
        )

    return prepare


def _disk_full(inputs: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], object]:
    real_write = writer.write_safetensors_file

    def write_then_fail(path, tensors, metadata):
        real_write(path, tensors, metadata)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(writer, "write_safetensors_file", write_then_fail)
    return lambda: write_checkpoint(iter([("w", torch.ones(4))]), out)


def _disk_full_in_a_task_folder(
    inputs: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], object]:
    """EMR writes one folder per task inside its own staging folder: name the real output."""

    def write_tasks() -> None:
        with atomic_dir(out) as staging:
            write_checkpoint(iter([("w", torch.ones(4))]), staging / "task_a")
            _disk_full(inputs, staging / "task_b", monkeypatch)()

    return write_tasks


def _read_only(inputs: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], object]:
    real_mkdir = Path.mkdir

    def refuse_staging(self, *args, **kwargs):
        if ".tadrop-tmp-" in self.name:  # what a read-only folder does (root ignores chmod)
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse_staging)
    return lambda: write_checkpoint(iter([("w", torch.ones(4))]), out)


def _pickle_with_code(inputs: Path, out: Path, _) -> Callable[[], object]:
    inputs.mkdir()
    torch.save({"weight": torch.ones(2), "hook": Payload()}, inputs / "model.pt")
    return lambda: open_checkpoint(inputs / "model.pt")


def _plain_pickle_with_code(inputs: Path, out: Path, _) -> Callable[[], object]:
    inputs.mkdir()
    (inputs / "model.bin").write_bytes(pickle.dumps({"hook": Payload()}, protocol=4))
    return lambda: open_checkpoint(inputs / "model.bin")


def _truncated_pickle(inputs: Path, out: Path, _) -> Callable[[], object]:
    inputs.mkdir()
    torch.save({"weight": torch.ones(64)}, inputs / "model.pt")
    (inputs / "model.pt").write_bytes((inputs / "model.pt").read_bytes()[:300])
    return lambda: open_checkpoint(inputs / "model.pt")


def _empty_tensor(inputs: Path, out: Path, _) -> Callable[[], object]:
    inputs.mkdir()
    save_file({"ok": torch.ones(2), "enc.prompt": torch.ones(0, 3)}, inputs / "m.safetensors")
    checkpoint = open_checkpoint(inputs / "m.safetensors")
    checkpoint.check_not_empty("ok")  # a tensor with elements passes
    return lambda: checkpoint.check_not_empty("enc.prompt")


CASES = [
    Case(
        "merged tensor holds NaN",
        _nonfinite,
        ("{out}", "'layers.0.weight'", "1 NaN/Inf", "ties: scaling=nan", "Check the parameters"),
    ),
    Case(
        "float16 output beyond range",
        _beyond(torch.float16, 1e6, torch.float32),
        ("{out}", "'head.weight'", "1e+06", "range of torch.float16", "float32", "1e9"),
    ),
    Case(
        "bfloat16 output beyond range",
        _beyond(torch.bfloat16, 1e300, torch.float64),
        ("{out}", "'head.weight'", "range of torch.bfloat16"),
    ),
    Case(
        "tensor already cast to float16 holds Inf",
        lambda inputs, out, _: (
            lambda: write_checkpoint([("head.weight", torch.tensor([1e6]).half())], out)
        ),
        ("{out}", "'head.weight'", "torch.float16 turns values beyond its range into Inf"),
    ),
    Case("disk full", _disk_full, ("{out}: could not write", "No space left", "free space")),
    Case(
        "disk full in a nested task folder",
        _disk_full_in_a_task_folder,
        ("{out}/task_b: could not write", "No space left"),
    ),
    Case("read-only output", _read_only, ("{out}: could not write", "read-only")),
    Case(
        "pickle with code (zip format)",
        _pickle_with_code,
        ("{in}/model.pt", "refused for safety", "posix.getcwd", "save_file", "weights_only=False"),
    ),
    Case(
        "plain pickle with code",
        _plain_pickle_with_code,
        ("{in}/model.bin", "refused for safety", "posix.getcwd", "safetensors"),
    ),
    Case("truncated pickle", _truncated_pickle, ("{in}/model.pt", "truncated")),
    Case(
        "empty tensor",
        _empty_tensor,
        ("{in}/m.safetensors", "'enc.prompt'", "(0, 3)", "exclude", r"^enc\.prompt$"),
    ),
    Case(
        "LoRA alpha as a string",
        lambda inputs, out, _: _adapter(inputs, r=1, lora_alpha="16"),
        ("{in}/adapter/adapter_config.json", "'lora_alpha'", '"16"', "not a string"),
    ),
    Case(
        "LoRA rank 0",
        lambda inputs, out, _: _adapter(inputs, r=0),
        ("adapter_config.json", "'r'", "greater than or equal to 1", "whole number"),
    ),
    Case(
        "LoRA rank_pattern key not a regex",
        lambda inputs, out, _: _adapter(inputs, r=1, rank_pattern={"layer(": 1}),
        ("adapter_config.json", "'rank_pattern'", "'layer('", "not a valid regular expression"),
    ),
    Case(
        "LoRA rank_pattern as a list",
        lambda inputs, out, _: _adapter(inputs, r=1, rank_pattern=["layer"]),
        ("adapter_config.json", "'rank_pattern'", "valid dictionary", "module-name regex"),
    ),
    Case(
        "LoRA alpha_pattern value not a number",
        lambda inputs, out, _: _adapter(inputs, r=1, alpha_pattern={"layer": "x"}),
        ("adapter_config.json", "'alpha_pattern.layer'", "valid number"),
    ),
    Case(
        "LoRA config is a JSON list",
        lambda inputs, out, _: _adapter_config_raw(inputs, '[{"r": 8}]'),
        ("{in}/adapter/adapter_config.json", "JSON list", "not an object", '"r": 8'),
    ),
    Case(
        "LoRA config is not JSON",
        lambda inputs, out, _: _adapter_config_raw(inputs, "r: 8"),
        ("{in}/adapter/adapter_config.json", "not valid JSON"),
    ),
]


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.name.startswith(".") or path.suffix == ".partial"
    )


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_refused_with_a_message_and_nothing_changes(tmp_path, monkeypatch, case):
    inputs, out = tmp_path / "in", tmp_path / "out"
    action = case.prepare(inputs, out, monkeypatch)
    before = snapshot(inputs) if inputs.exists() else {}
    with pytest.raises(CheckpointError) as info:
        action()
    monkeypatch.undo()
    message = str(info.value)
    for fragment in case.fragments:
        assert fragment.format(**{"in": inputs, "out": out}) in message, message
    assert ".tadrop-tmp" not in message and "Traceback" not in message
    assert not out.exists()
    assert hidden_leftovers(tmp_path) == []
    assert (snapshot(inputs) if inputs.exists() else {}) == before


def test_lora_config_as_peft_writes_it_is_accepted(tmp_path):
    peft_defaults = {
        "r": 1,
        "lora_alpha": 2,
        "lora_dropout": 0.05,
        "target_modules": ["layer"],
        "task_type": "CAUSAL_LM",
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_dora": False,
        "use_rslora": False,
        "fan_in_fan_out": False,
        "layer_replication": None,
        "megatron_config": None,
    }
    checkpoint = _adapter(tmp_path, **peft_defaults)()
    torch.testing.assert_close(checkpoint.delta("layer.weight"), 2.0 * torch.ones(2, 2))


def test_nonfinite_values_can_be_written_when_asked(tmp_path):
    out = write_checkpoint([("mask", torch.tensor([float("-inf"), 0.0]))], tmp_path / "out",
                           finite_only=False)  # fmt: skip
    assert torch.equal(open_checkpoint(out).get("mask"), torch.tensor([float("-inf"), 0.0]))


def test_overwrite_that_fails_keeps_the_old_output(tmp_path, monkeypatch):
    out = write_checkpoint([("w", torch.ones(2))], tmp_path / "out")
    before = snapshot(out)
    with pytest.raises(CheckpointError, match="NaN"):
        write_checkpoint([("w", torch.full((2,), float("nan")))], out, overwrite=True)
    assert snapshot(out) == before
    assert hidden_leftovers(tmp_path) == []


def test_refusal_while_streaming_removes_the_shards_already_written(tmp_path):
    tensors = [(f"t{i}", torch.ones(64)) for i in range(3)] + [("bad", torch.tensor([1e6]))]
    with pytest.raises(CheckpointError, match="'bad'"):
        write_checkpoint(iter(tensors), tmp_path / "out", max_shard_bytes=256,
                         dtype=torch.float16)  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == []

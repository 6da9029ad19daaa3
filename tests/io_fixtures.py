"""Helpers for the checkpoint I/O tests: small models on disk and before/after file snapshots."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file


def small_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A few tensors of mixed shapes and dtypes, like a tiny transformer's."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(10, 4, generator=generator),
        "layers.0.attn.q_proj.weight": torch.randn(4, 4, generator=generator),
        "layers.0.attn.q_proj.bias": torch.randn(4, generator=generator),
        "layers.0.mlp.weight": torch.randn(8, 4, generator=generator).to(torch.bfloat16),
        "layers.1.attn.q_proj.weight": torch.randn(4, 4, generator=generator).half(),
        "position_ids": torch.arange(6).unsqueeze(0),
        "scalar": torch.tensor(0.5),
    }


def assert_same_tensors(checkpoint, expected: dict[str, torch.Tensor]) -> None:
    assert sorted(checkpoint.keys()) == sorted(expected)
    for name, tensor in expected.items():
        loaded = checkpoint.get(name)
        assert loaded.dtype == tensor.dtype, name
        assert loaded.shape == tensor.shape, name
        assert checkpoint.shape(name) == tuple(tensor.shape), name
        assert checkpoint.dtype(name) == tensor.dtype, name
        assert checkpoint.nbytes(name) == tensor.numel() * tensor.element_size(), name
        assert torch.equal(loaded, tensor), name


def save_hf_shards(
    folder: Path, shards: list[dict[str, torch.Tensor]], *, index: bool = True
) -> list[Path]:
    """Hugging Face sharded layout written with safetensors' own writer (an independent one)."""
    folder.mkdir(parents=True, exist_ok=True)
    count = len(shards)
    paths, weight_map = [], {}
    for number, shard in enumerate(shards, start=1):
        path = folder / f"model-{number:05d}-of-{count:05d}.safetensors"
        save_file(shard, path, metadata={"format": "pt"})
        paths.append(path)
        weight_map.update(dict.fromkeys(shard, path.name))
    if index:
        total = sum(t.numel() * t.element_size() for shard in shards for t in shard.values())
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
        )
    return paths


def write_adapter(folder: Path, tensors: dict[str, torch.Tensor], **config: object) -> Path:
    """A PEFT LoRA adapter folder: adapter_config.json + adapter_model.safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    full_config = {"peft_type": "LORA", "base_model_name_or_path": "tiny-base", **config}
    (folder / "adapter_config.json").write_text(json.dumps(full_config))
    save_file({k: v.clone() for k, v in tensors.items()}, folder / "adapter_model.safetensors")
    return folder


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under `root` (or `root` itself): relative name -> (sha256, mtime_ns)."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {
        str(path.relative_to(root.parent)): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in files
    }


def peak_rss_kib() -> int:
    """Peak resident set size of this process since the last reset_peak_rss()."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1))


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter; False where /proc does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True

"""Small synthetic model families written as real checkpoint files, for library tests."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

SHAPES = {
    "embeddings.word_embeddings.weight": (12, 8),
    "encoder.layer.0.attention.self.query.weight": (8, 8),
    "encoder.layer.0.attention.self.query.bias": (8,),
    "encoder.layer.0.intermediate.dense.weight": (16, 8),
    "encoder.layer.0.output.dense.weight": (8, 16),
    "encoder.layer.0.output.LayerNorm.weight": (8,),
    "encoder.layer.1.attention.self.query.weight": (8, 8),
    "encoder.layer.1.intermediate.dense.weight": (16, 8),
    "encoder.layer.1.output.dense.weight": (8, 16),
}


def make_state(seed: int, scale: float = 1.0, shapes: dict = SHAPES) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: scale * torch.randn(shape, generator=generator) for name, shape in shapes.items()}


def write_family(
    root: Path, tasks: int = 3, *, with_buffer: bool = True, shapes: dict = SHAPES
) -> tuple[Path, dict[str, Path]]:
    """A base folder and ``tasks`` fine-tuned folders (HF style) under ``root``."""
    base_state = make_state(0, shapes=shapes)
    if with_buffer:
        base_state["embeddings.position_ids"] = torch.arange(12).unsqueeze(0)
    base_dir = root / "base"
    base_dir.mkdir(parents=True)
    save_file(base_state, str(base_dir / "model.safetensors"))
    (base_dir / "config.json").write_text('{"model_type": "bert"}')
    task_dirs = {}
    for index in range(tasks):
        delta = make_state(100 + index, scale=0.01 * (index + 1), shapes=shapes)
        state = {name: base_state[name] + delta[name] for name in delta}
        if with_buffer:
            state["embeddings.position_ids"] = base_state["embeddings.position_ids"].clone()
        task_dir = root / f"task{index}"
        task_dir.mkdir()
        save_file(state, str(task_dir / "model.safetensors"))
        task_dirs[f"task{index}"] = task_dir
    return base_dir, task_dirs

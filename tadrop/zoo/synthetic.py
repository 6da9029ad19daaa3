"""The synthetic demo family: generated task vectors whose distribution differs by component.

NOT fine-tuned models: a small Llama-shaped base (weights ~ N(0, 0.02), norms 1) and four
"tasks", each base + tau where tau's distribution is chosen per component kind, so one
family shows how TADrop's d = Q_a / Q_b reacts to each shape (values at (0.5, 0.95)):

    gauss      N(0, s^2)                                   d = 0.674 / 1.960 = 0.34
    laplace    Laplace(0, s)                                d = 0.693 / 2.996 = 0.23
    sparse     10% of entries N(0, (4s)^2), the rest N(0, (s/100)^2)  d ~ 0.003
    lowrank    U @ V of rank 2 (a merged LoRA), vectors Gaussian     d ~ 0.23-0.24
    quantized  the rounding error of 8-bit quantisation: uniform     d = 0.50 / 0.95 = 0.53

Task k gives component kind i the distribution ``DISTRIBUTIONS[(i + k) % 5]``, so every task
holds all five shapes and no two tasks agree on one kind. The scale s varies by layer.
Generated from a seed in a second, nothing downloaded; written to ``<home>/zoo/synthetic/``
with a manifest labelled ``"synthetic": true``. No labelled data: merges of it can be
compared with the data-free diagnostics only.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from tadrop.io.atomic import atomic_dir
from tadrop.names import parse_name
from tadrop.zoo.errors import CorruptZooError
from tadrop.zoo.load import tadrop_home
from tadrop.zoo.manifest import (
    MANIFEST_NAME,
    file_problems,
    file_records,
    read_json,
    write_json,
)

SYNTHETIC = "synthetic"
# (base folder, task -> folder) -> extra manifest entries
FamilyMeasure = Callable[[Path, dict[str, Path]], dict[str, Any]]
FORMAT = 1  # bump when the generator changes: a stored family of another format is rebuilt
DISTRIBUTIONS = ("gauss", "laplace", "sparse", "lowrank", "quantized")
TASKS = ("task_a", "task_b", "task_c", "task_d")
HIDDEN, INTERMEDIATE, LAYERS, VOCAB = 128, 352, 4, 1000
BASE_STD, DELTA_STD = 0.02, 1e-3
SPARSE_DENSITY, LOW_RANK = 0.1, 2
KIND_ORDER = ("embedding", "attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up",
              "mlp.down", "norm", "head")  # fmt: skip


def tensor_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of the Llama-shaped model, in checkpoint order."""
    shapes = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for layer in range(LAYERS):
        prefix = f"model.layers.{layer}."
        shapes += [
            (prefix + f"self_attn.{p}_proj.weight", (HIDDEN, HIDDEN)) for p in ("q", "k", "v", "o")
        ]
        shapes += [
            (prefix + "mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN)),
            (prefix + "mlp.up_proj.weight", (INTERMEDIATE, HIDDEN)),
            (prefix + "mlp.down_proj.weight", (HIDDEN, INTERMEDIATE)),
            (prefix + "input_layernorm.weight", (HIDDEN,)),
            (prefix + "post_attention_layernorm.weight", (HIDDEN,)),
        ]
    return [*shapes, ("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]


def distribution_of(task_index: int, kind: str) -> str:
    """The delta distribution task `task_index` gives component `kind`."""
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    return DISTRIBUTIONS[(rank + task_index) % len(DISTRIBUTIONS)]


def _generator(seed: int, *parts: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(":".join([str(seed), *parts]).encode()))


def sample_delta(
    distribution: str, shape: tuple[int, ...], scale: float, generator: torch.Generator
) -> torch.Tensor:
    """One tensor of task vector with the named distribution and scale `scale`."""
    normal = torch.randn(shape, generator=generator)
    if distribution == "gauss":
        return scale * normal
    if distribution == "laplace":
        uniform = torch.rand(shape, generator=generator).clamp(1e-7, 1 - 1e-7) - 0.5
        return -scale * uniform.sign() * torch.log1p(-2 * uniform.abs())
    if distribution == "sparse":
        chosen = torch.rand(shape, generator=generator) < SPARSE_DENSITY
        return torch.where(chosen, 4 * scale * normal, scale / 100 * normal)
    if distribution == "lowrank" and len(shape) == 2:
        left = torch.randn(shape[0], LOW_RANK, generator=generator)
        right = torch.randn(LOW_RANK, shape[1], generator=generator)
        product = left @ right
        return scale * product / product.std()
    if distribution == "lowrank":
        return scale * normal
    if distribution == "quantized":  # rounding error of a uniform 8-bit grid: uniform
        return scale * (torch.rand(shape, generator=generator) * 2 - 1)
    raise ValueError(f"unknown delta distribution {distribution!r}; choose one of {DISTRIBUTIONS}")


def _base_tensor(name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    if parse_name(name).kind == "norm":
        return torch.ones(shape)
    return BASE_STD * torch.randn(shape, generator=_generator(seed, "base", name))


def _layer_scale(name: str) -> float:
    layer = parse_name(name).layer
    return DELTA_STD * (0.5 + (layer if layer is not None else LAYERS // 2) / LAYERS)


def _config() -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE, "num_hidden_layers": LAYERS,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": VOCAB,
        "tie_word_embeddings": False, "dtype": "float32",
    }  # fmt: skip


@dataclass(frozen=True)
class SyntheticFamily:
    """A built synthetic family: `base_dir`, `task_dirs`, and its manifest (with the mapping)."""

    root: Path
    base_dir: Path
    task_dirs: dict[str, Path]
    manifest: dict[str, Any]

    @property
    def tasks(self) -> list[str]:
        return list(self.task_dirs)


def synthetic_path(home: str | os.PathLike | None = None) -> Path:
    return tadrop_home(home) / "zoo" / SYNTHETIC


def _write_model(folder: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    folder.mkdir(parents=True)
    safetensors.torch.save_file(tensors, str(folder / "model.safetensors"), metadata=metadata)
    (folder / "config.json").write_text(json.dumps(_config(), indent=2) + "\n")


def build_synthetic(
    home: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    force: bool = False,
    measure: FamilyMeasure | None = None,
) -> Path:
    """Generate the synthetic family (about a second) unless an intact one is there.

    ``measure(base_dir, task_dirs)`` adds numbers to the manifest (the callers pass
    ``tadrop.experiments.zoo_numbers.family_numbers``: heterogeneity of d); the zoo package
    itself computes no statistics (layers: docs/ARCHITECTURE.md)."""
    root = synthetic_path(home)
    if not force and synthetic_is_built(home):
        return root
    shapes = tensor_shapes()
    base = {name: _base_tensor(name, shape, seed) for name, shape in shapes}
    with atomic_dir(root, overwrite=True) as staging:
        _write_model(staging / "base", base, {"tadrop_zoo": SYNTHETIC, "role": "base"})
        tasks = {}
        for index, task in enumerate(TASKS):
            tensors = {}
            for name, shape in shapes:
                distribution = distribution_of(index, parse_name(name).kind)
                generator = _generator(seed, task, name)
                delta = sample_delta(distribution, shape, _layer_scale(name), generator)
                tensors[name] = base[name] + delta
            _write_model(staging / "tasks" / task, tensors, {"tadrop_zoo": SYNTHETIC, "task": task})
            kinds = sorted({parse_name(name).kind for name, _ in shapes}, key=KIND_ORDER.index)
            tasks[task] = {
                "model_dir": f"tasks/{task}",
                "distributions": {kind: distribution_of(index, kind) for kind in kinds},
            }
        files = [p for p in staging.rglob("*") if p.is_file() and not p.name.startswith(".")]
        manifest = _manifest(seed, tasks, file_records(staging, files), staging, measure)
        write_json(staging / MANIFEST_NAME, manifest)
    return root


def _manifest(
    seed: int,
    tasks: dict[str, Any],
    files: dict[str, Any],
    staging: Path,
    measure: FamilyMeasure | None,
) -> dict[str, Any]:
    task_dirs = {task: staging / record["model_dir"] for task, record in tasks.items()}
    return {
        "synthetic": True,
        "format": FORMAT,
        "seed": seed,
        "description": (
            "SYNTHETIC family, not fine-tuned models: base + generated task vectors whose "
            "distribution (gauss, laplace, sparse, lowrank, quantized) differs by component "
            "kind; for teaching how TADrop's drop rate reacts to each shape. No labelled data."
        ),
        "tasks": tasks,
        "files": files,
        **(measure(staging / "base", task_dirs) if measure else {}),
    }


def _open(root: Path) -> SyntheticFamily:
    hint = "Generate it with: python3 -m tadrop.zoo build --zoo synthetic"
    manifest = read_json(root / MANIFEST_NAME, hint)
    if not manifest.get("synthetic") or manifest.get("format") != FORMAT:
        raise CorruptZooError(f"{root / MANIFEST_NAME}: not a current synthetic family. {hint}")
    problems = file_problems(root, manifest.get("files", {}), hashes=False)
    if problems:
        raise CorruptZooError(
            f"{root}: damaged synthetic family ({'; '.join(problems[:3])}). {hint}"
        )
    task_dirs = {task: root / record["model_dir"] for task, record in manifest["tasks"].items()}
    return SyntheticFamily(
        root=root, base_dir=root / "base", task_dirs=task_dirs, manifest=manifest
    )


def load_synthetic(home: str | os.PathLike | None = None) -> SyntheticFamily:
    """Open the generated family; CorruptZooError (saying how to generate it) if absent."""
    return _open(synthetic_path(home))


def synthetic_is_built(home: str | os.PathLike | None = None) -> bool:
    try:
        load_synthetic(home)
    except CorruptZooError:
        return False
    return True

"""Generate the merge benchmarks' model family: a Llama-shaped base and K fine-tuned variants.

Every tensor is drawn from a generator seeded by (seed, model, tensor name), so a family is
the same on every machine and no model is ever held whole in memory. The base follows a
Llama initialisation (weights ~ N(0, 0.02), RMSNorm weights 1). Each fine-tuned variant is
base + tau with its own delta distribution and its own scale per layer:

    gauss     tau ~ N(0, s_l^2),                 s_l growing with depth (x0.5 .. x2)
    laplace   tau ~ Laplace(0, s_l / sqrt(2)),   s_l shrinking with depth (heavy tails)
    sparse    5% of entries ~ N(0, (4 s_l)^2), the rest exactly 0
    lowrank   matrices: U @ V of rank 8 scaled to std s_l (a merged LoRA); vectors Gaussian
              s_l log-uniform per tensor (x0.25 .. x4)

Shapes (``--shape``): ``100m`` (the merge benchmark's Llama), ``tiny``, ``llama-1.1b``
(TinyLlama's shape, bf16, 4 tasks: ~2.2 GB a model, 11 GB in all) and ``clip-vit-b32`` (a CLIP
ViT-B/32 vision tower with HF names and the 0-d ``logit_scale``, 8 tasks: gauss, laplace,
sparse, lowrank, gauss2, ...; 350 MB a model). The large ones are generated on demand and
never belong in git or CI.

Written as Hugging Face style sharded safetensors folders (index + config.json), so both
``tadrop merge`` and ``mergekit-yaml`` read them. Run as a script to (re)generate:

    python3 bench/make_family.py --root /work/bench_data
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

DELTA_KINDS = ("gauss", "laplace", "sparse", "lowrank")
BASE_STD = 0.02  # Llama's initializer_range
DELTA_STD = 1e-3  # typical |tau| scale relative to the base's 0.02
SPARSE_DENSITY = 0.05
LOW_RANK = 8
MARKER = "family.json"  # parameters of a generated family; a matching one is reused


class _CountsParameters:
    """``parameters``: the entries of every tensor a shape lists (shared by the model shapes)."""

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        raise NotImplementedError

    @property
    def parameters(self) -> int:
        return sum(math.prod(shape) for _, shape in self.tensor_shapes())


@dataclass(frozen=True)
class FamilyShape(_CountsParameters):
    """A Llama configuration; the default has about 106M parameters (fp32: 425 MB a model)."""

    hidden: int = 768
    intermediate: int = 2048
    layers: int = 12
    heads: int = 12
    kv_heads: int = 4  # grouped-query attention, as in Llama 2/3: k/v projections are narrower
    vocab: int = 20000
    tasks: int = 4  # fine-tuned variants; task i follows DELTA_KINDS[i % 4]

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every tensor, in the order Llama checkpoints list them."""
        kv_width = self.kv_heads * self.head_dim
        shapes = [("model.embed_tokens.weight", (self.vocab, self.hidden))]
        for layer in range(self.layers):
            prefix = f"model.layers.{layer}."
            shapes += [
                (prefix + "self_attn.q_proj.weight", (self.hidden, self.hidden)),
                (prefix + "self_attn.k_proj.weight", (kv_width, self.hidden)),
                (prefix + "self_attn.v_proj.weight", (kv_width, self.hidden)),
                (prefix + "self_attn.o_proj.weight", (self.hidden, self.hidden)),
                (prefix + "mlp.gate_proj.weight", (self.intermediate, self.hidden)),
                (prefix + "mlp.up_proj.weight", (self.intermediate, self.hidden)),
                (prefix + "mlp.down_proj.weight", (self.hidden, self.intermediate)),
                (prefix + "input_layernorm.weight", (self.hidden,)),
                (prefix + "post_attention_layernorm.weight", (self.hidden,)),
            ]
        shapes += [
            ("model.norm.weight", (self.hidden,)),
            ("lm_head.weight", (self.vocab, self.hidden)),
        ]
        return shapes

    def hf_config(self, dtype: torch.dtype) -> dict[str, object]:
        """config.json of a LlamaForCausalLM with this shape."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "vocab_size": self.vocab,
            "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-6,
            "hidden_act": "silu",
            "tie_word_embeddings": False,
            "dtype": str(dtype).replace("torch.", ""),
        }


@dataclass(frozen=True)
class ClipVisionShape(_CountsParameters):
    """The vision tower of a CLIP ViT (HF ``CLIPModel`` names, ``logit_scale`` included, 0-d).

    The default is ViT-B/32 (88M parameters; fp32: 350 MB a model), merged over 8 tasks as in
    the CLIP-merging literature (FusionBench's eight image-classification tasks)."""

    hidden: int = 768
    intermediate: int = 3072
    layers: int = 12
    heads: int = 12
    patch: int = 32
    image: int = 224
    projection: int = 512
    tasks: int = 8

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        h, positions = self.hidden, (self.image // self.patch) ** 2 + 1
        shapes = [
            ("vision_model.embeddings.class_embedding", (h,)),
            ("vision_model.embeddings.patch_embedding.weight", (h, 3, self.patch, self.patch)),
            ("vision_model.embeddings.position_embedding.weight", (positions, h)),
            ("vision_model.pre_layrnorm.weight", (h,)),
            ("vision_model.pre_layrnorm.bias", (h,)),
        ]
        for layer in range(self.layers):
            prefix = f"vision_model.encoder.layers.{layer}."
            for projection in ("k_proj", "v_proj", "q_proj", "out_proj"):
                shapes += [
                    (f"{prefix}self_attn.{projection}.weight", (h, h)),
                    (f"{prefix}self_attn.{projection}.bias", (h,)),
                ]
            shapes += [
                (prefix + "layer_norm1.weight", (h,)),
                (prefix + "layer_norm1.bias", (h,)),
                (prefix + "mlp.fc1.weight", (self.intermediate, h)),
                (prefix + "mlp.fc1.bias", (self.intermediate,)),
                (prefix + "mlp.fc2.weight", (h, self.intermediate)),
                (prefix + "mlp.fc2.bias", (h,)),
                (prefix + "layer_norm2.weight", (h,)),
                (prefix + "layer_norm2.bias", (h,)),
            ]
        shapes += [
            ("vision_model.post_layernorm.weight", (h,)),
            ("vision_model.post_layernorm.bias", (h,)),
            ("visual_projection.weight", (self.projection, h)),
            ("logit_scale", ()),
        ]
        return shapes

    def hf_config(self, dtype: torch.dtype) -> dict[str, object]:
        """config.json of the vision tower (CLIPVisionModelWithProjection)."""
        return {
            "architectures": ["CLIPVisionModelWithProjection"],
            "model_type": "clip_vision_model",
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "patch_size": self.patch,
            "image_size": self.image,
            "projection_dim": self.projection,
            "dtype": str(dtype).replace("torch.", ""),
        }


SHAPES = {
    "100m": FamilyShape(),
    "tiny": FamilyShape(hidden=64, intermediate=160, layers=2, heads=4, kv_heads=2, vocab=500),
    # TinyLlama-1.1B's shape (22 layers, hidden 2048, GQA with 4 KV heads, vocab 32000); bf16.
    "llama-1.1b": FamilyShape(
        hidden=2048, intermediate=5632, layers=22, heads=32, kv_heads=4, vocab=32000
    ),
    "clip-vit-b32": ClipVisionShape(),
    "clip-tiny": ClipVisionShape(
        hidden=32, intermediate=64, layers=2, heads=2, patch=8, image=32, projection=16, tasks=3
    ),  # fmt: skip
}
DEFAULT_DTYPES = {"llama-1.1b": torch.bfloat16}


@dataclass(frozen=True)
class FamilyPaths:
    base: Path
    tasks: dict[str, Path]  # task -> model folder
    shape: FamilyShape | ClipVisionShape
    dtype: torch.dtype

    @property
    def all_dirs(self) -> list[Path]:
        return [self.base, *self.tasks.values()]


def _generator(seed: int, model: str, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}\x00{model}\x00{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _layer_position(name: str, layers: int) -> float:
    """0 for the embeddings, 1 for the head, the layer's depth in between."""
    if ".layers." in name:
        return (int(name.split(".layers.")[1].split(".")[0]) + 0.5) / layers
    return 0.0 if "embed" in name else 1.0


def base_tensor(name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """The base weight: norm weights 1, CLIP's logit_scale log(1/0.07), everything else
    N(0, BASE_STD^2), float32."""
    if name.endswith(".weight") and "norm" in name.split(".")[-2]:
        return torch.ones(shape)
    if name == "logit_scale":
        return torch.full(shape, math.log(1 / 0.07))
    return torch.randn(shape, generator=_generator(seed, "base", name)) * BASE_STD


def task_kinds(shape: FamilyShape | ClipVisionShape) -> dict[str, str]:
    """Task name -> delta kind: gauss, laplace, sparse, lowrank, then gauss2, laplace2, ..."""
    kinds = {}
    for index in range(shape.tasks):
        kind = DELTA_KINDS[index % len(DELTA_KINDS)]
        kinds[kind if index < len(DELTA_KINDS) else f"{kind}{index // len(DELTA_KINDS) + 1}"] = kind
    return kinds


def delta_scale(kind: str, name: str, layers: int, generator: torch.Generator) -> float:
    """s_l: the task's delta scale for this tensor (see the module docstring)."""
    depth = _layer_position(name, layers)
    if kind == "gauss":
        return DELTA_STD * 2.0 ** (2 * depth - 1)  # x0.5 at the bottom .. x2 at the top
    if kind == "laplace":
        return DELTA_STD * 2.0 ** (1 - 2 * depth)
    if kind == "sparse":
        return DELTA_STD
    return DELTA_STD * 4.0 ** (2 * float(torch.rand((), generator=generator)) - 1)


def task_delta(
    kind: str, name: str, shape: tuple[int, ...], layers: int, seed: int, task: str | None = None
) -> torch.Tensor:
    """tau of one tensor for ``task`` (default: named as its kind), whose deltas follow
    ``kind`` (float32)."""
    generator = _generator(seed, task or kind, name)
    scale = delta_scale(kind, name, layers, generator)
    if kind == "gauss":
        return torch.randn(shape, generator=generator) * scale
    if kind == "laplace":
        magnitude = torch.empty(shape).exponential_(generator=generator)  # |Laplace(0, 1)|
        sign = torch.randint(0, 2, shape, generator=generator, dtype=torch.int8) * 2 - 1
        return magnitude.mul_(sign).mul_(scale / math.sqrt(2.0))  # Laplace(0, 1) has std sqrt 2
    if kind == "sparse":
        kept = torch.rand(shape, generator=generator) < SPARSE_DENSITY
        return torch.randn(shape, generator=generator).mul_(kept).mul_(4 * scale)
    if kind == "lowrank" and len(shape) == 2:
        left = torch.randn((shape[0], LOW_RANK), generator=generator)
        right = torch.randn((LOW_RANK, shape[1]), generator=generator)
        return (left @ right).mul_(scale / math.sqrt(LOW_RANK))  # entries have variance rank
    if kind == "lowrank":
        return torch.randn(shape, generator=generator) * scale
    raise ValueError(f"Unknown delta kind {kind!r}; use one of {DELTA_KINDS}.")


def model_tensors(
    shape: FamilyShape | ClipVisionShape,
    task: str | None,
    seed: int,
    dtype: torch.dtype,
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of the base (task None) or of one fine-tuned variant, one at a time."""
    kind = None if task is None else task_kinds(shape)[task]
    for name, tensor_shape in shape.tensor_shapes():
        weight = base_tensor(name, tensor_shape, seed)
        if kind is not None:
            weight += task_delta(kind, name, tensor_shape, shape.layers, seed, task)
        yield name, weight.to(dtype)


def _marker(
    shape: FamilyShape | ClipVisionShape, dtype: torch.dtype, seed: int, shard_bytes: int
) -> dict:
    return {
        "shape": {"class": type(shape).__name__, **asdict(shape)},
        "dtype": str(dtype),
        "seed": seed,
        "shard_bytes": shard_bytes,
        "tasks": task_kinds(shape),
        "generator": 2,  # bump when the distributions above change
    }


def family_paths(
    root: Path, shape: FamilyShape | ClipVisionShape, dtype: torch.dtype
) -> FamilyPaths:
    tasks = {task: root / task for task in task_kinds(shape)}
    return FamilyPaths(root / "base", tasks, shape, dtype)


def make_family(
    root: str | Path,
    shape: FamilyShape | ClipVisionShape = SHAPES["100m"],
    *,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    shard_bytes: int = 160 * 2**20,
    log=print,
) -> FamilyPaths:
    """Write the family under ``root`` (base/, gauss/, laplace/, sparse/, lowrank/) unless a
    family with the same parameters is already there; return its folders."""
    from tadrop.io import write_checkpoint

    root = Path(root).expanduser().absolute()
    paths = family_paths(root, shape, dtype)
    wanted = _marker(shape, dtype, seed, shard_bytes)
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        if all(folder.is_dir() for folder in paths.all_dirs):
            return paths
    if root.exists():
        shutil.rmtree(root)  # a different or interrupted family: start over
    root.mkdir(parents=True)
    for task, folder in [(None, paths.base), *paths.tasks.items()]:
        log(f"writing {folder} ({shape.parameters / 1e6:.1f}M parameters, {dtype})")
        write_checkpoint(
            model_tensors(shape, task, seed, dtype), folder, max_shard_bytes=shard_bytes
        )
        (folder / "config.json").write_text(json.dumps(shape.hf_config(dtype), indent=2))
    marker.write_text(json.dumps(wanted, indent=2))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="/work/bench_data/family-100m", help="output folder")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="100m")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        help="default: bfloat16 for llama-1.1b, else float32",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dtype = (
        getattr(torch, args.dtype) if args.dtype else DEFAULT_DTYPES.get(args.shape, torch.float32)
    )
    paths = make_family(args.root, SHAPES[args.shape], dtype=dtype, seed=args.seed)
    print(f"family ready: base {paths.base}, tasks {', '.join(paths.tasks)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())

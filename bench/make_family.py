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


@dataclass(frozen=True)
class FamilyShape:
    """A Llama configuration; the default has about 106M parameters (fp32: 425 MB a model)."""

    hidden: int = 768
    intermediate: int = 2048
    layers: int = 12
    heads: int = 12
    kv_heads: int = 4  # grouped-query attention, as in Llama 2/3: k/v projections are narrower
    vocab: int = 20000

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

    @property
    def parameters(self) -> int:
        return sum(math.prod(shape) for _, shape in self.tensor_shapes())

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


SHAPES = {
    "100m": FamilyShape(),
    "tiny": FamilyShape(hidden=64, intermediate=160, layers=2, heads=4, kv_heads=2, vocab=500),
}


@dataclass(frozen=True)
class FamilyPaths:
    base: Path
    tasks: dict[str, Path]  # task -> model folder
    shape: FamilyShape
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
    """The base weight: RMSNorm weights 1, everything else N(0, BASE_STD^2), float32."""
    if name.endswith("norm.weight"):
        return torch.ones(shape)
    return torch.randn(shape, generator=_generator(seed, "base", name)) * BASE_STD


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
    kind: str, name: str, shape: tuple[int, ...], layers: int, seed: int
) -> torch.Tensor:
    """tau of one tensor for a task whose deltas follow ``kind`` (float32)."""
    generator = _generator(seed, kind, name)
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
    shape: FamilyShape, kind: str | None, seed: int, dtype: torch.dtype
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of the base (kind None) or of one fine-tuned variant, one at a time."""
    for name, tensor_shape in shape.tensor_shapes():
        weight = base_tensor(name, tensor_shape, seed)
        if kind is not None:
            weight += task_delta(kind, name, tensor_shape, shape.layers, seed)
        yield name, weight.to(dtype)


def _marker(shape: FamilyShape, dtype: torch.dtype, seed: int, shard_bytes: int) -> dict:
    return {
        "shape": asdict(shape),
        "dtype": str(dtype),
        "seed": seed,
        "shard_bytes": shard_bytes,
        "tasks": list(DELTA_KINDS),
        "generator": 1,  # bump when the distributions above change
    }


def family_paths(root: Path, shape: FamilyShape, dtype: torch.dtype) -> FamilyPaths:
    return FamilyPaths(root / "base", {kind: root / kind for kind in DELTA_KINDS}, shape, dtype)


def make_family(
    root: str | Path,
    shape: FamilyShape = SHAPES["100m"],
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
    for kind, folder in [(None, paths.base), *paths.tasks.items()]:
        log(f"writing {folder} ({shape.parameters / 1e6:.1f}M parameters, {dtype})")
        write_checkpoint(
            model_tensors(shape, kind, seed, dtype), folder, max_shard_bytes=shard_bytes
        )
        (folder / "config.json").write_text(json.dumps(shape.hf_config(dtype), indent=2))
    marker.write_text(json.dumps(wanted, indent=2))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="/work/bench_data/family-100m", help="output folder")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="100m")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = make_family(
        args.root, SHAPES[args.shape], dtype=getattr(torch, args.dtype), seed=args.seed
    )
    print(f"family ready: base {paths.base}, tasks {', '.join(paths.tasks)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())

"""A PEFT LoRA adapter presented as the full fine-tuned model over its base checkpoint.

LoRA (Hu et al., 2021): W = W_0 + s * B A, with A of shape (r, fan_in), B of shape (fan_out, r)
and s = alpha / r; rsLoRA (Kalajdzievski, 2023) uses s = alpha / sqrt(r). Embedding layers store
A of shape (r, num_embeddings) and B of shape (dim, r), so their update is s * (B A)^T; GPT-2
style Conv1D weights (`fan_in_fan_out`) are stored transposed, so theirs is s * (B A)^T too.
Convolutions keep the kernel in A (r, in, kh, kw) and a 1x1 B (out, r, 1, 1).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from tadrop.io.checkpoint import Checkpoint
from tadrop.io.errors import CheckpointError

PEFT_PREFIX = "base_model.model."
# <module>.lora_A.weight, <module>.lora_A.<adapter name>.weight
_LINEAR_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<half>[AB])(?:\.[^.]+)?\.weight$")
# <module>.lora_embedding_A, <module>.lora_embedding_A.<adapter name>
_EMBEDDING_KEY = re.compile(r"^(?P<module>.+)\.lora_embedding_(?P<half>[AB])(?:\.[^.]+)?$")
_SAVED_MODULE = ".modules_to_save."
# PEFT's default save_embedding_layers="auto" also stores a targeted embedding's own weight as
# <module>.base_layer.weight (the frozen base weight, or the resized one): the adapted tensor is
# that weight plus the LoRA update.
_BASE_LAYER = ".base_layer."
_DEFAULT_R = 8  # PEFT's LoraConfig defaults
_DEFAULT_ALPHA = 8


@dataclass(frozen=True)
class LoraUpdate:
    """The low-rank update of one base tensor: scale * B @ A (transposed when `transpose`)."""

    a_key: str  # adapter tensor names
    b_key: str
    scale: float
    embedding: bool
    transpose: bool


def _base_name_candidates(adapter_path: str) -> list[str]:
    """Base names an adapter path may refer to, tolerating a `model.` prefix difference."""
    path = adapter_path.removeprefix(PEFT_PREFIX)
    stripped = path.removeprefix("model.")
    return list(dict.fromkeys([path, "model." + path, stripped]))


def _pattern_value(patterns: dict, module: str, default: float) -> float:
    """PEFT's rank_pattern / alpha_pattern: the first key matching the end of the module name."""
    for pattern, value in (patterns or {}).items():
        if re.fullmatch(rf"(?:.*\.)?(?:{pattern})", module):
            return value
    return default


class LoraCheckpoint(Checkpoint):
    """The base checkpoint's tensors with a PEFT LoRA adapter folded in, one tensor at a time.

    `close()` releases the adapter only; the base checkpoint belongs to the caller.
    """

    def __init__(self, folder: Path, adapter: Checkpoint, config: dict, base: Checkpoint) -> None:
        self.source = folder
        self.format = "peft-lora"
        self.config = config
        self.base = base
        self.adapter = adapter
        self.aux_dir = base.aux_dir
        self.metadata = {**adapter.metadata, "base_source": str(base.source)}
        self._check_config()
        self._updates: dict[str, LoraUpdate] = {}
        self._replacements: dict[str, str] = {}  # base name -> adapter name of a full tensor
        self._base_layers: dict[str, str] = {}  # base name -> adapter name of its base_layer copy
        self._map_adapter_keys()

    # --- mapping adapter names onto base names -------------------------------------------------

    def _check_config(self) -> None:
        peft_type = str(self.config.get("peft_type", "LORA")).upper()
        if peft_type != "LORA":
            raise CheckpointError(
                f"{self.source}: adapter_config.json has peft_type {peft_type!r}; only LoRA "
                "adapters can be read. Merge the adapter into its base with PEFT first."
            )
        if self.config.get("use_dora"):
            raise CheckpointError(
                f"{self.source}: DoRA adapters (use_dora=true) are not supported; merge it with "
                "PEFT's merge_and_unload() and pass the merged model instead."
            )

    def _resolve(self, adapter_path: str, param: str) -> str | None:
        for candidate in _base_name_candidates(adapter_path):
            if f"{candidate}.{param}" in self.base:
                return f"{candidate}.{param}"
        return None

    def _map_adapter_keys(self) -> None:
        halves: dict[str, dict[str, str]] = {}  # base name -> {"A": key, "B": key}
        embedding: dict[str, bool] = {}
        unmapped = []
        for key in self.adapter.keys():
            match = _LINEAR_KEY.match(key) or _EMBEDDING_KEY.match(key)
            if _BASE_LAYER in key:
                target = self._resolve_full_tensor(key.replace(_BASE_LAYER, "."))
                if target is not None:
                    self._add_base_layer(target, key)
            elif match:
                target = self._resolve(match["module"], "weight")
                if target is not None:
                    halves.setdefault(target, {})[match["half"]] = key
                    embedding[target] = match.re is _EMBEDDING_KEY
            else:
                target = self._resolve_full_tensor(key)
                if target is not None:
                    self._add_replacement(target, key)
            if target is None:
                unmapped.append(key)
        if unmapped:
            raise self._unmapped_error(unmapped)
        for target, pair in halves.items():
            self._add_update(target, pair, embedding[target])

    def _resolve_full_tensor(self, key: str) -> str | None:
        """modules_to_save copies (`<m>.modules_to_save[.<adapter>].<p>`) and trained biases."""
        if _SAVED_MODULE not in key:
            return self._resolve(*key.rsplit(".", 1)) if "." in key else None
        module, rest = key.split(_SAVED_MODULE, 1)
        without_adapter_name = rest.split(".", 1)[1] if "." in rest else rest
        for param in dict.fromkeys([rest, without_adapter_name]):
            target = self._resolve(module, param)
            if target is not None:
                return target
        return None

    def _unmapped_error(self, unmapped: list[str]) -> CheckpointError:
        shown = ", ".join(map(repr, unmapped[:8])) + (" ..." if len(unmapped) > 8 else "")
        base_name = self.config.get("base_model_name_or_path") or "its base model"
        return CheckpointError(
            f"{self.source}: {len(unmapped)} adapter tensor(s) match no tensor of the base "
            f"{self.base.source}: {shown}. Supported are lora_A/lora_B, lora_embedding_A/B, "
            f"modules_to_save and full tensors of the base; check that the base is {base_name}."
        )

    def _claim(self, target: str, adapter_key: str) -> None:
        if target in self._updates or target in self._replacements:
            raise CheckpointError(
                f"{self.source}: adapter tensors {adapter_key!r} and another one both map to "
                f"base tensor {target!r}; the adapter file is inconsistent."
            )

    def _add_replacement(self, target: str, key: str) -> None:
        self._claim(target, key)
        if self.adapter.shape(key) != self.base.shape(target):
            raise CheckpointError(
                f"{self.source}: adapter tensor {key!r} has shape {self.adapter.shape(key)} but "
                f"base tensor {target!r} has {self.base.shape(target)}; wrong base model?"
            )
        self._replacements[target] = key

    def _add_base_layer(self, target: str, key: str) -> None:
        if self.adapter.shape(key) != self.base.shape(target):
            raise CheckpointError(
                f"{self.source}: adapter tensor {key!r} has shape {self.adapter.shape(key)} but "
                f"base tensor {target!r} has {self.base.shape(target)}: the embedding was resized "
                "during fine-tuning. Merge the adapter with PEFT's merge_and_unload() and pass the "
                "merged model (with a base of the same vocabulary size) instead."
            )
        self._base_layers[target] = key

    def _add_update(self, target: str, pair: dict[str, str], embedding: bool) -> None:
        if set(pair) != {"A", "B"}:
            missing = "B" if "A" in pair else "A"
            raise CheckpointError(
                f"{self.source}: {next(iter(pair.values()))!r} has no matching lora_{missing}; "
                "the adapter file is incomplete. Save the adapter again."
            )
        self._claim(target, pair["A"])
        module = target.rsplit(".", 1)[0]
        rank = _pattern_value(
            self.config.get("rank_pattern"), module, self.config.get("r", _DEFAULT_R)
        )
        alpha = _pattern_value(
            self.config.get("alpha_pattern"), module, self.config.get("lora_alpha", _DEFAULT_ALPHA)
        )
        a_shape, b_shape = self.adapter.shape(pair["A"]), self.adapter.shape(pair["B"])
        if a_shape[0] != rank or math.prod(b_shape[1:]) != rank:
            raise CheckpointError(
                f"{self.source}: adapter_config.json gives rank r={rank} for {module!r} but "
                f"{pair['A']!r} has shape {a_shape} and {pair['B']!r} {b_shape}; fix r or "
                "rank_pattern in adapter_config.json."
            )
        scale = alpha / math.sqrt(rank) if self.config.get("use_rslora") else alpha / rank
        transpose = embedding or (bool(self.config.get("fan_in_fan_out")) and len(a_shape) == 2)
        update = LoraUpdate(pair["A"], pair["B"], scale, embedding, transpose)
        delta_shape = (b_shape[0], *a_shape[1:])
        delta_shape = delta_shape[::-1] if transpose else delta_shape
        if delta_shape != self.base.shape(target):
            raise CheckpointError(
                f"{self.source}: the update B @ A for {target!r} has shape {delta_shape} but the "
                f"base tensor has {self.base.shape(target)}; wrong base model, or "
                "fan_in_fan_out is set wrong in adapter_config.json."
            )
        self._updates[target] = update

    # --- the Checkpoint interface ----------------------------------------------------------------

    def keys(self) -> list[str]:
        return self.base.keys()

    def __contains__(self, name: object) -> bool:
        return name in self.base

    def shape(self, name: str) -> tuple[int, ...]:
        return self.base.shape(name)

    def dtype(self, name: str) -> torch.dtype:
        return self.base.dtype(name)

    @property
    def adapted_keys(self) -> list[str]:
        """Base tensors the adapter changes."""
        changed = {*self._updates, *self._replacements, *self._base_layers}
        return [name for name in self.base.keys() if name in changed]

    def delta(self, name: str) -> torch.Tensor | None:
        """float32 change the adapter makes to tensor `name` (s * B @ A), or None if unchanged."""
        if name in self._replacements or name in self._base_layers:
            return self.get(name).float() - self.base.get(name).float()
        update = self._updates.get(name)
        if update is None:
            if name not in self.base:
                raise self._unknown_tensor(name)
            return None
        return self._lora_delta(update)

    def _lora_delta(self, update: LoraUpdate) -> torch.Tensor:
        lora_a = self.adapter.get(update.a_key).float()  # (r, fan_in, *kernel)
        lora_b = self.adapter.get(update.b_key).float()  # (fan_out, r, *1)
        product = (lora_b.flatten(1) @ lora_a.flatten(1)).reshape(
            lora_b.shape[0], *lora_a.shape[1:]
        )
        return update.scale * (product.T if update.transpose else product)

    def get(self, name: str) -> torch.Tensor:
        """Base tensor plus the adapter's update, in the base's dtype."""
        if name in self._replacements:
            return self.adapter.get(self._replacements[name]).to(self.base.dtype(name))
        base_tensor = self.base.get(name)
        if name in self._base_layers:  # the adapter's copy of the weight the update adds to
            source = self.adapter.get(self._base_layers[name]).to(base_tensor.dtype)
        else:
            source = base_tensor
        update = self._updates.get(name)
        if update is None:
            if name not in self.base:
                raise self._unknown_tensor(name)
            return source
        return (source.float() + self._lora_delta(update)).to(base_tensor.dtype)

    def close(self) -> None:
        self.adapter.close()

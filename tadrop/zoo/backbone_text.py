"""all-MiniLM-L6-v2 (a 6-layer BERT) as the text zoo's backbone, mean-pooled.

The model was trained by sentence-transformers with mean pooling over tokens, so the task
features are the attention-masked mean of the last hidden states (its CLS vector was never
trained to summarise a sentence). BERT's pooler (dense + tanh on CLS) is therefore unused and
left out of every checkpoint: each of the 101 stored tensors (all parameters) is fine-tuned.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from tadrop.io import write_checkpoint
from tadrop.zoo.backbones import Encoded
from tadrop.zoo.datasets import LabelledData
from tadrop.zoo.errors import CorruptZooError
from tadrop.zoo.sources import MINILM

# Stored in the package's file but not part of the encoder we fine-tune: the unused pooler,
# and position ids that transformers now rebuilds as a non-persistent buffer.
NOT_FINETUNED = ("pooler.", "embeddings.position_ids")


class TextBackbone:
    """BERT encoder + mean pooling; texts truncated to `max_length` tokens."""

    kind = "text"

    def __init__(self, max_length: int, tokenizer_dir: Path | None = None) -> None:
        self.max_length = max_length
        self.tokenizer_dir = tokenizer_dir

    @staticmethod
    def pretrained_dir() -> Path:
        return MINILM.file("model/model.safetensors").parent

    @cached_property
    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        folder = self.tokenizer_dir or self.pretrained_dir()
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)

    @cached_property
    def feature_dim(self) -> int:
        return self._config(self.tokenizer_dir or self.pretrained_dir()).hidden_size

    @staticmethod
    def _config(model_dir: Path) -> Any:
        from transformers import BertConfig

        return BertConfig.from_pretrained(str(model_dir), local_files_only=True)

    def load(self, model_dir: Path) -> torch.nn.Module:
        from transformers import BertModel

        weights_path = Path(model_dir) / "model.safetensors"
        if not weights_path.is_file():
            raise CorruptZooError(f"{weights_path}: missing; rebuild the zoo.")
        module = BertModel(self._config(model_dir), add_pooling_layer=False)
        weights = {
            name: tensor
            for name, tensor in safetensors.torch.load_file(str(weights_path)).items()
            if not name.startswith(NOT_FINETUNED)
        }
        module.load_state_dict(weights, strict=True)
        return module.eval()

    def load_pretrained(self) -> torch.nn.Module:
        return self.load(self.pretrained_dir())

    def save(self, module: torch.nn.Module, out_dir: Path, metadata: dict[str, Any]) -> Path:
        tensors = ((name, t.detach().contiguous()) for name, t in module.state_dict().items())
        aux_dir = self.tokenizer_dir or self.pretrained_dir()
        return write_checkpoint(
            tensors, out_dir, aux_dir=aux_dir, metadata=metadata, overwrite=True
        )

    def encode(self, data: LabelledData) -> Encoded:
        tokens = self.tokenizer(
            list(data.inputs),
            truncation=True,
            max_length=self.max_length,
            padding="max_length",
            return_tensors="pt",
        )
        mask = tokens["attention_mask"]
        return Encoded(
            tensors={"input_ids": tokens["input_ids"], "attention_mask": mask},
            labels=torch.as_tensor(data.labels, dtype=torch.int64),
            lengths=mask.sum(dim=1),
        )

    def batch(self, encoded: Encoded, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        longest = int(encoded.lengths[indices].max())  # drop columns that are padding for all
        return {name: t[indices, :longest] for name, t in encoded.tensors.items()}

    def features(self, module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = module(**batch).last_hidden_state  # (B, L, H)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)

    def train_mode(self, module: torch.nn.Module) -> None:
        module.train()

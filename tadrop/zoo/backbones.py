"""What the zoo needs from a pretrained backbone, whatever its modality.

A backbone turns examples into tensors once (`encode`), slices them into batches (`batch`),
maps a batch to one feature vector per example (`features`), and reads and writes its weights
as a Hugging Face style folder. Task heads (`torch.nn.Linear` on the features) live outside
the backbone: the backbone is what task vectors and merges are about.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from tadrop.zoo.datasets import LabelledData


@dataclass(frozen=True)
class Encoded:
    """Examples turned into tensors, first dimension N; `lengths` lets text batches drop padding."""

    tensors: dict[str, torch.Tensor]
    labels: torch.Tensor  # int64, (N,)
    lengths: torch.Tensor | None = None  # int64, (N,): tokens per text

    def __len__(self) -> int:
        return len(self.labels)


class Backbone(Protocol):
    kind: str  # "text" or "image"
    feature_dim: int

    def load_pretrained(self) -> torch.nn.Module:
        """The pretrained weights as shipped in their package (without any classifier)."""

    def load(self, model_dir: Path) -> torch.nn.Module:
        """A module built from the config and weights in `model_dir`."""

    def save(self, module: torch.nn.Module, out_dir: Path, metadata: dict[str, Any]) -> Path:
        """Write `module` as a Hugging Face style folder at `out_dir`, atomically."""

    def encode(self, data: LabelledData) -> Encoded: ...

    def batch(self, encoded: Encoded, indices: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def features(self, module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, feature_dim) features for one batch."""

    def train_mode(self, module: torch.nn.Module) -> None:
        """Put `module` in training mode (the way this backbone is fine-tuned)."""


def batch_indices(
    n_examples: int, batch_size: int, *, order: np.ndarray | None = None
) -> list[torch.Tensor]:
    """Consecutive batches of example indices, in `order` (default 0..N-1)."""
    order = np.arange(n_examples) if order is None else order
    return [
        torch.from_numpy(np.ascontiguousarray(order[start : start + batch_size]))
        for start in range(0, n_examples, batch_size)
    ]

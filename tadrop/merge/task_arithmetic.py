"""Task Arithmetic (Ilharco et al., 2023): theta = theta_pre + lambda * sum_k w_k tau_k.

With a sparsifier (e.g. TADrop) each tau_k is sparsified first.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from tadrop.merge.base import MergeMethod, SparsifiedTensor, stack_weights


class TaskArithmetic(MergeMethod):
    name: ClassVar[str] = "task_arithmetic"

    def __init__(self, scaling: float = 0.3, weights: dict[str, float] | None = None) -> None:
        self.scaling = scaling
        self.weights = weights

    def merge_tensor(self, tensor: SparsifiedTensor) -> torch.Tensor:
        weights = stack_weights(self.weights, tensor.task_names, tensor.sparse.device)
        # sum_k (lambda w_k) tau_k as one matrix-vector product: one pass, no (K, *shape) temporary.
        return torch.tensordot(self.scaling * weights, tensor.sparse, dims=1)


def task_arithmetic_merge(
    base: dict[str, torch.Tensor],
    task_vectors: list[dict[str, torch.Tensor]],
    scaling: float = 0.3,
    weights: list[float] | None = None,
) -> dict[str, torch.Tensor]:
    """Pure function over state dicts: theta_pre + lambda * sum_k w_k tau_k."""
    weights = weights or [1.0] * len(task_vectors)
    return {
        name: base[name].float()
        + scaling * sum(w * tv[name].float() for w, tv in zip(weights, task_vectors, strict=True))
        for name in base
    }

"""Weight averaging: theta = theta_pre + mean_k tau_k (= the mean of the fine-tuned weights)."""

from __future__ import annotations

from typing import ClassVar

import torch

from tadrop.merge.base import MergeMethod, SparsifiedTensor


class WeightAveraging(MergeMethod):
    name: ClassVar[str] = "averaging"

    def merge_tensor(self, tensor: SparsifiedTensor) -> torch.Tensor:
        return tensor.sparse.mean(dim=0)


def weight_average_merge(
    base: dict[str, torch.Tensor], finetuned: list[dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """Pure function over state dicts: the element-wise mean of the fine-tuned weights."""
    return {
        name: torch.stack([model[name].float() for model in finetuned]).mean(0) for name in base
    }

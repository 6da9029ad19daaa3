"""Whole state dicts to score: a merge at another scaling; the base and the fine-tuned models
(``base_state``, ``finetuned_state``) come from ``tadrop.task_vectors``, below the evaluators
that also need them."""

from __future__ import annotations

from collections.abc import Callable

import torch

from tadrop.merge import MergeResult
from tadrop.task_vectors import base_state, finetuned_state

__all__ = ["ModelFor", "base_state", "finetuned_state", "scaled_model_for"]

ModelFor = Callable[[str], dict[str, torch.Tensor]]  # task -> the state dict to score on it


def scaled_model_for(result: MergeResult, scaling: float) -> ModelFor:
    """theta_pre + scaling * (merged - theta_pre) for a merge made at scaling 1."""
    base = base_state(result.family)

    def model_for(task: str) -> dict[str, torch.Tensor]:
        state = result.model_for(task, dtype=torch.float32)
        for name in result.merged:
            state[name] = (base[name].float() + scaling * (state[name] - base[name].float())).to(
                base[name].dtype
            )
        return state

    return model_for

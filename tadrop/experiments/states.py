"""Whole state dicts of a family: the base, a fine-tuned model, a merge at another scaling.

Used by the evaluation command and the report to score models that are not a merge result."""

from __future__ import annotations

from collections.abc import Callable

import torch

from tadrop.merge import MergeResult
from tadrop.task_vectors import ModelFamily

ModelFor = Callable[[str], dict[str, torch.Tensor]]  # task -> the state dict to score on it


def base_state(family: ModelFamily) -> dict[str, torch.Tensor]:
    """The pre-trained model's tensors under its own key names."""
    return {name: family.base.get(name) for name in family.base.keys()}


def finetuned_state(family: ModelFamily, task: str) -> dict[str, torch.Tensor]:
    """The fine-tuned checkpoint under the base's key names (unmatched tensors from the base)."""
    key_map = family.key_map[task]
    checkpoint = family.tasks[task]
    return {
        name: checkpoint.get(key_map[name]) if name in key_map else family.base.get(name)
        for name in family.base.keys()
    }


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

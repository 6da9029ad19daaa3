"""DARE (Yu et al., 2024): drop each entry with probability p, rescale kept ones by 1/(1 - p).

The random draw is seeded per (seed, task, tensor name), so a run is repeatable and does not
depend on the order tensors are visited in.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from tadrop.params import PROBABILITY, Range
from tadrop.sparsify.base import Sparsifier, seeded_uniform


class DARE(Sparsifier):
    name: ClassVar[str] = "dare"
    param_ranges: ClassVar[dict[str, Range]] = {"p": PROBABILITY}  # checked by validate

    def __init__(self, p: float = 0.9, seed: int = 0, rescale: str = "inverse") -> None:
        self.p = p
        self.seed = seed
        self.rescale = rescale

    def keep_mask(self, tau: torch.Tensor, *, name: str = "", task: str = "") -> torch.Tensor:
        self.validate()
        return seeded_uniform(tau, self.seed, task, name) >= self.p

    def rescale_factor(self, tau: torch.Tensor, keep_mask: torch.Tensor) -> float:
        if self.rescale == "inverse":
            return 1.0 / (1.0 - self.p)  # the published factor uses p, not the realised rate
        return super().rescale_factor(tau, keep_mask)


def dare(tau: torch.Tensor, p: float, seed: int = 0, name: str = "") -> torch.Tensor:
    """Pure function: DARE one tensor; returns the sparse, rescaled task vector."""
    sparsifier = DARE(p=p, seed=seed)
    return sparsifier.apply(tau, sparsifier.keep_mask(tau, name=name))

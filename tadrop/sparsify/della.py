"""DELLA's MagPrune (Deep et al., 2024): magnitude-ranked random dropping.

Within a tensor, entries are ranked by |tau| (rank 0 = smallest). Entry i is kept with
probability p_keep(i) = density - epsilon/2 + epsilon * rank_i / (n - 1), so larger entries
are kept more often and the mean keep probability is ``density``; kept entries are rescaled
by 1 / p_keep(i). Seeded per (seed, task, tensor). Ranks are over the whole flattened tensor
(mergekit ranks within each row; the difference is documented in docs/methods.md).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from tadrop.params import FRACTION, NON_NEGATIVE, ParameterError, Range
from tadrop.sparsify.base import Sparsifier, seeded_uniform


class DELLA(Sparsifier):
    name: ClassVar[str] = "della"
    param_ranges: ClassVar[dict[str, Range]] = {
        "density": FRACTION,
        "epsilon": NON_NEGATIVE,
    }
    rescale = "inverse"  # kept entries are divided by their keep probability (``apply``)

    def __init__(self, density: float = 0.3, epsilon: float = 0.1, seed: int = 0) -> None:
        self.density = density
        self.epsilon = epsilon
        self.seed = seed

    def validate(self) -> None:
        super().validate()
        low, high = self.density - self.epsilon / 2, self.density + self.epsilon / 2
        if low <= 0 or high > 1:
            raise ParameterError(
                "epsilon",
                f"DELLA needs 0 < density - epsilon/2 and density + epsilon/2 <= 1; got density="
                f"{self.density!r}, epsilon={self.epsilon!r}. Lower epsilon.",
            )

    def keep_probability(self, tau: torch.Tensor) -> torch.Tensor:
        flat = tau.abs().flatten()
        ranks = torch.empty_like(flat)
        order = torch.sort(flat, stable=True).indices
        ranks[order] = torch.arange(flat.numel(), dtype=flat.dtype, device=flat.device)
        spread = ranks / max(flat.numel() - 1, 1)
        return (self.density - self.epsilon / 2 + self.epsilon * spread).reshape(tau.shape)

    def keep_mask(self, tau: torch.Tensor, *, name: str = "", task: str = "") -> torch.Tensor:
        self.validate()
        return seeded_uniform(tau, self.seed, task, name) < self.keep_probability(tau)

    def apply(
        self, tau: torch.Tensor, keep_mask: torch.Tensor, *, name: str = "", task: str = ""
    ) -> torch.Tensor:
        return torch.where(keep_mask, tau / self.keep_probability(tau), torch.zeros_like(tau))

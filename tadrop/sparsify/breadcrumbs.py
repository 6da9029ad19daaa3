"""Model Breadcrumbs (Davari & Belilovsky, 2024): drop the largest outliers and the small noise.

Per tensor, entries are ranked by |tau|; the largest ``round(gamma * n)`` are dropped, and of
the rest only the next ``round(density * n)`` largest are kept. No rescale by default.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from tadrop.params import FRACTION, PROBABILITY, Range
from tadrop.quantiles import smallest_k_keep_mask
from tadrop.sparsify.base import Sparsifier


class Breadcrumbs(Sparsifier):
    name: ClassVar[str] = "breadcrumbs"
    param_ranges: ClassVar[dict[str, Range]] = {"density": FRACTION, "gamma": PROBABILITY}

    def __init__(self, density: float = 0.9, gamma: float = 0.01, rescale: str = "none") -> None:
        self.density = density
        self.gamma = gamma
        self.rescale = rescale

    def validate(self) -> None:
        super().validate()  # each parameter against param_ranges
        if self.density + self.gamma > 1:
            raise ValueError(
                f"Breadcrumbs needs 0 <= gamma < 1 and density + gamma <= 1; got density="
                f"{self.density!r}, gamma={self.gamma!r}."
            )

    def keep_mask(self, tau: torch.Tensor, *, name: str = "", task: str = "") -> torch.Tensor:
        self.validate()
        numel = tau.numel()
        n_top = int(round(self.gamma * numel))
        n_keep = min(int(round(self.density * numel)), numel - n_top)
        magnitude = tau.abs()
        below_top = smallest_k_keep_mask(
            magnitude, numel - n_top
        ).logical_not()  # smallest n - n_top
        above_small = smallest_k_keep_mask(magnitude, numel - n_top - n_keep)
        return below_top & above_small

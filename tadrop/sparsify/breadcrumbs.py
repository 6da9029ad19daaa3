"""Model Breadcrumbs (Davari & Belilovsky, 2024): drop the largest outliers and the small noise.

Per tensor, entries are ranked by |tau|; the largest ``round(gamma * n)`` are dropped, and of
the rest only the next ``round(density * n)`` largest are kept. No rescale by default.
``count="floor"`` takes int(gamma * n) and int(density * n) instead (mergekit's
``magnitude_outliers``; float64 products, see ``magnitude.keep_count``).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from tadrop.params import FRACTION, PROBABILITY, Range
from tadrop.quantiles import smallest_k_keep_mask
from tadrop.sparsify.base import Sparsifier, _check_choice
from tadrop.sparsify.magnitude import keep_count

COUNT_RULES = ("round", "floor")


class Breadcrumbs(Sparsifier):
    name: ClassVar[str] = "breadcrumbs"
    param_ranges: ClassVar[dict[str, Range]] = {"density": FRACTION, "gamma": PROBABILITY}

    def __init__(
        self,
        density: float = 0.9,
        gamma: float = 0.01,
        rescale: str = "none",
        count: str = "round",
    ) -> None:
        self.density = density
        self.gamma = gamma
        self.rescale = rescale
        self.count = count

    def validate(self) -> None:
        super().validate()  # each parameter against param_ranges
        _check_choice("count", self.count, COUNT_RULES)
        if self.density + self.gamma > 1:
            raise ValueError(
                f"Breadcrumbs needs 0 <= gamma < 1 and density + gamma <= 1; got density="
                f"{self.density!r}, gamma={self.gamma!r}."
            )

    def keep_mask(self, tau: torch.Tensor, *, name: str = "", task: str = "") -> torch.Tensor:
        self.validate()
        numel = tau.numel()
        n_top = keep_count(self.gamma, numel, self.count)
        n_keep = min(keep_count(self.density, numel, self.count), numel - n_top)
        magnitude = tau.abs()
        below_top = smallest_k_keep_mask(
            magnitude, numel - n_top
        ).logical_not()  # smallest n - n_top
        above_small = smallest_k_keep_mask(magnitude, numel - n_top - n_keep)
        return below_top & above_small

"""Magnitude top-k: keep the fraction ``density`` of entries with the largest |tau|.

``scope="tensor"`` keeps round(density * n) entries of every tensor (mergekit's TIES trim);
``scope="global"`` keeps the top entries over the whole task vector (TIES as published), with
an exact global threshold (see ``global_scope``). Kept entries are not rescaled by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

import torch

from tadrop.params import FRACTION, Range
from tadrop.quantiles import smallest_abs_keep_mask
from tadrop.sparsify.base import Sparsifier
from tadrop.sparsify.global_scope import global_drop_counts

if TYPE_CHECKING:
    from tadrop.task_vectors import ModelFamily


class Magnitude(Sparsifier):
    name: ClassVar[str] = "magnitude"
    param_ranges: ClassVar[dict[str, Range]] = {"density": FRACTION}  # checked by validate
    # set by fit (scope="global"); read-only empty until then: __init__ only stores parameters
    _drop_counts: Mapping[str, Mapping[str, int]] = MappingProxyType({})

    def __init__(self, density: float = 0.2, scope: str = "tensor", rescale: str = "none") -> None:
        self.density = density
        self.scope = scope
        self.rescale = rescale

    def keep_mask(self, tau: torch.Tensor, *, name: str = "", task: str = "") -> torch.Tensor:
        return smallest_abs_keep_mask(tau, self._drop_count(tau, name, task))

    def keep_mask_into(self, tau: torch.Tensor, keep_out: torch.Tensor, **where: str) -> float:
        """The mask straight into ``keep_out`` (no |tau| temporary); returns the scale."""
        smallest_abs_keep_mask(tau, self._drop_count(tau, **where), out=keep_out)
        return self.rescale_factor(tau, keep_out)

    def _drop_count(self, tau: torch.Tensor, name: str = "", task: str = "") -> int:
        self.validate()
        if self.scope == "global":
            try:
                n_drop = self._drop_counts[task][name]
            except KeyError:
                raise ValueError(
                    f"Magnitude(scope='global') has no drop count for task {task!r}, tensor {name!r}: "
                    "call fit(family) first."
                ) from None
        else:
            n_drop = tau.numel() - int(round(self.density * tau.numel()))
        return n_drop

    def fit(self, family: ModelFamily, *, device: str | torch.device = "auto") -> Magnitude:
        self.validate()
        if self.scope == "global":
            # keep round(density * total) entries, as the tensor scope keeps round(density * n)
            self._drop_counts = global_drop_counts(
                family, lambda task, total: total - int(round(self.density * total)), device=device
            )
        return self


def magnitude_keep_mask(tau: torch.Tensor, density: float) -> torch.Tensor:
    """Pure function: keep-mask of the round(density * n) largest |tau| of one tensor."""
    return Magnitude(density=density).keep_mask(tau)

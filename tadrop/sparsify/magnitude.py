"""Magnitude top-k: keep the fraction ``density`` of entries with the largest |tau|.

``scope="tensor"`` keeps k entries of every tensor (mergekit's and PEFT's TIES trim);
``scope="global"`` keeps the top entries over the whole task vector (TIES as published, and
FusionBench), with an exact global threshold (see ``global_scope``). Kept entries are not
rescaled by default.

How many entries k is kept of n (``count``; d*n is the float64 product, as every peer computes
it, so 0.29 * 100 = 28.999999999999996 keeps 28 under a floor):
- ``"round"``: round(d*n), half to even (tadrop's default);
- ``"floor"``: int(d*n) (PEFT's ``magnitude_based_pruning``);
- ``"floor_min1"``: max(1, int(d*n)) (mergekit's ``sparsify.magnitude``);
- ``"threshold_ties"``: every entry at least as large as the (int(d*n) + 1)-th largest, so
  int(d*n) + 1 entries plus every entry tied with that one (FusionBench's ``topk_values_mask``:
  ``|tau| >= kthvalue(n - int(n*d))``).
Ties at the cut of the other rules are dropped in flat-index order (lowest index first).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

import torch

from tadrop.params import FRACTION, Range
from tadrop.quantiles import smallest_abs_keep_mask
from tadrop.sparsify.base import Sparsifier, _check_choice
from tadrop.sparsify.global_scope import global_drop_counts

if TYPE_CHECKING:
    from tadrop.task_vectors import ModelFamily

COUNT_RULES = ("round", "floor", "floor_min1", "threshold_ties")
# compat -> (scope, count): the magnitude trim of each toolkit's TIES (docs/methods.md)
TRIM_COMPAT: dict[str, tuple[str, str]] = {
    "mergekit": ("tensor", "floor_min1"),
    "peft": ("tensor", "floor"),
    "fusion_bench": ("global", "threshold_ties"),
}


def keep_count(density: float, numel: int, count: str = "round") -> int:
    """k, the entries a magnitude trim keeps of ``numel`` (for ``"threshold_ties"`` the count
    before the ties of the k-th largest are added)."""
    product = density * numel  # float64, exactly as the peers compute it
    if count == "round":
        return int(round(product))
    if count == "floor":
        return int(product)
    if count == "floor_min1":
        return max(1, int(product)) if numel else 0
    if count == "threshold_ties":
        return min(int(product) + 1, numel)
    raise ValueError(f"count={count!r} is not allowed; use one of {COUNT_RULES}.")


def below_kth_largest(magnitude: torch.Tensor, keep: int) -> int:
    """How many entries are strictly smaller than the ``keep``-th largest of ``magnitude``."""
    flat = magnitude.reshape(-1).float()
    if keep >= flat.numel():
        return 0
    kth = flat.kthvalue(flat.numel() - keep + 1).values  # the keep-th largest
    return int(torch.count_nonzero(flat < kth))


class Magnitude(Sparsifier):
    name: ClassVar[str] = "magnitude"
    param_ranges: ClassVar[dict[str, Range]] = {"density": FRACTION}  # checked by validate
    # set by fit (scope="global"); read-only empty until then: __init__ only stores parameters
    _drop_counts: Mapping[str, Mapping[str, int]] = MappingProxyType({})
    _fitted: tuple[object, ...] = ()  # (family, density, rules) of the last fit

    def __init__(
        self,
        density: float = 0.2,
        scope: str = "tensor",
        rescale: str = "none",
        count: str = "round",
        compat: str | None = None,
    ) -> None:
        self.density = density
        self.scope = scope
        self.rescale = rescale
        self.count = count
        self.compat = compat

    def validate(self) -> None:
        super().validate()  # each parameter against param_ranges
        _check_choice("count", self.count, COUNT_RULES)
        if self.compat is not None:
            _check_choice("compat", self.compat, tuple(TRIM_COMPAT))
            for what, value, default in (
                ("scope", self.scope, "tensor"),
                ("count", self.count, "round"),
            ):
                if value not in (default, self._rules()[what]):
                    raise ValueError(
                        f"magnitude compat={self.compat!r} sets {what}="
                        f"{self._rules()[what]!r}, but {what}={value!r} was given too; "
                        f"remove one of compat and {what}."
                    )

    def _rules(self) -> dict[str, str]:
        """The effective scope and count rule (``compat`` sets both)."""
        if self.compat is None:
            return {"scope": self.scope, "count": self.count}
        scope, count = TRIM_COMPAT[self.compat]
        return {"scope": scope, "count": count}

    @property
    def needs_fit(self) -> bool:
        return self._rules()["scope"] == "global"

    def keep_mask(self, tau: torch.Tensor, *, name: str = "", task: str = "") -> torch.Tensor:
        return smallest_abs_keep_mask(tau, self._drop_count(tau, name, task))

    def keep_mask_into(self, tau: torch.Tensor, keep_out: torch.Tensor, **where: str) -> float:
        """The mask straight into ``keep_out`` (no |tau| temporary); returns the scale."""
        smallest_abs_keep_mask(tau, self._drop_count(tau, **where), out=keep_out)
        return self.rescale_factor(tau, keep_out)

    def _drop_count(self, tau: torch.Tensor, name: str = "", task: str = "") -> int:
        self.validate()
        rules = self._rules()
        if rules["scope"] == "global":
            try:
                return self._drop_counts[task][name]
            except KeyError:
                raise ValueError(
                    f"Magnitude(scope='global') has no drop count for task {task!r}, tensor {name!r}: "
                    "call fit(family) first."
                ) from None
        keep = keep_count(self.density, tau.numel(), rules["count"])
        if rules["count"] == "threshold_ties":
            return below_kth_largest(tau.abs(), keep)
        return tau.numel() - keep

    def fit(self, family: ModelFamily, *, device: str | torch.device = "auto") -> Magnitude:
        """Global scope: the drop counts (two passes; skipped when this family was fitted with
        the same parameters, e.g. by a method's own first pass)."""
        self.validate()
        rules = self._rules()
        key = (self.density, rules["scope"], rules["count"])
        if self._fitted and self._fitted[0] is family and self._fitted[1:] == key:
            return self
        if rules["scope"] == "global":
            ties = rules["count"] == "threshold_ties"

            def drop_count(task: str, total: int) -> int:
                keep = keep_count(self.density, total, rules["count"])
                # with ties: the rank of the keep-th largest, whose ties are all kept
                return total - keep + 1 if ties and keep < total else total - keep

            self._drop_counts = global_drop_counts(
                family, drop_count, device=device, below_only=ties
            )
            self._fitted = (family, *key)
        return self


def magnitude_keep_mask(tau: torch.Tensor, density: float, count: str = "round") -> torch.Tensor:
    """Pure function: keep-mask of the largest |tau| of one tensor (``count``: see above)."""
    return Magnitude(density=density, count=count).keep_mask(tau)

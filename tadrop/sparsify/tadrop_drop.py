"""TADrop: tensor-wise adaptive drop (arXiv 2508.06163).

For one task vector tensor tau with n entries:
    d = Q_a(|tau|) / (Q_b(|tau|) + eps),  clamped to [0, 1]      (default a = 0.50, b = 0.95)
drop exactly round(d * n) entries with the smallest |tau| (ties: lowest flat index first), and
rescale the kept entries by ||tau||_2 / (||kept||_2 + eps) so the tensor keeps its L2 norm.

Ablations of the paper: ``rescale="none"``, ``rescale="inverse"`` (1 / (1 - d)),
``scope="global"`` (every tensor of a task dropped at one uniform rate: the task's
parameter-weighted mean of the per-tensor d, the same overall sparsity spread evenly), and
``complement=True`` (drop the fraction 1 - d instead of d).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

import torch

from tadrop.quantiles import abs_quantiles, smallest_abs_keep_mask, tadrop_keep_mask
from tadrop.sparsify.base import Sparsifier

if TYPE_CHECKING:
    from tadrop.task_vectors import ModelFamily


def check_quantiles(a: float, b: float, eps: float) -> None:
    """Raise ValueError unless 0 < a < b < 1 and eps > 0."""
    if not (0 < a < b < 1):
        raise ValueError(
            f"TADrop needs quantiles 0 < a < b < 1; got a={a!r}, b={b!r}. Choose e.g. a=0.5, b=0.95."
        )
    if not eps > 0:
        raise ValueError(f"TADrop needs eps > 0; got eps={eps!r}. The default is 1e-12.")


def tadrop_drop_rate(
    tau: torch.Tensor, a: float = 0.5, b: float = 0.95, eps: float = 1e-12
) -> float:
    """d = Q_a(|tau|) / (Q_b(|tau|) + eps), clamped to [0, 1]."""
    check_quantiles(a, b, eps)
    q_a, q_b = (float(value) for value in abs_quantiles(tau, [a, b]))
    return min(max(q_a / (q_b + eps), 0.0), 1.0)


def drop_count(rate: float, numel: int) -> int:
    """round(rate * n), Python's round (half to even)."""
    return int(round(rate * numel))


class TADrop(Sparsifier):
    name: ClassVar[str] = "tadrop"
    # set by fit (scope="global"); read-only empty until then: __init__ only stores parameters
    _global_rates: Mapping[str, float] = MappingProxyType({})

    def __init__(
        self,
        a: float = 0.5,
        b: float = 0.95,
        eps: float = 1e-12,
        rescale: str = "l2",
        scope: str = "tensor",
        complement: bool = False,
    ) -> None:
        self.a = a
        self.b = b
        self.eps = eps
        self.rescale = rescale
        self.scope = scope
        self.complement = complement

    def validate(self) -> None:
        super().validate()
        check_quantiles(self.a, self.b, self.eps)

    def drop_rate(self, tau: torch.Tensor, *, task: str = "") -> float:
        if self.scope == "global":
            if task not in self._global_rates:
                raise ValueError(
                    f"TADrop(scope='global') has no rate for task {task!r}: call fit(family) first."
                )
            rate = self._global_rates[task]
        else:
            rate = tadrop_drop_rate(tau, self.a, self.b, self.eps)
        return 1.0 - rate if self.complement else rate

    def keep_mask(self, tau: torch.Tensor, *, name: str = "", task: str = "") -> torch.Tensor:
        self.validate()
        n_drop = drop_count(self.drop_rate(tau, task=task), tau.numel())
        return smallest_abs_keep_mask(tau, n_drop)

    def keep_mask_into(self, tau: torch.Tensor, keep_out: torch.Tensor, **where: str) -> float:
        """Per-tensor TADrop in (about) one pass: the quantile engine returns the keep-mask and
        the L2 scale together (the same n_drop, ties and float64 norms as keep_mask + apply)."""
        if self.scope != "tensor" or self.complement:
            super().keep_mask_into(tau, keep_out, **where)
            return self.rescale_factor(tau, keep_out)
        self.validate()
        _, _, scale = tadrop_keep_mask(tau, self.a, self.b, self.eps, out=keep_out)
        return scale if self.rescale == "l2" else self.rescale_factor(tau, keep_out)

    def fit(self, family: ModelFamily, *, device: str | torch.device = "auto") -> TADrop:
        """For scope='global': each task's rate is the numel-weighted mean of its tensors' d."""
        self.validate()
        if self.scope != "global":
            return self
        from tadrop.task_vectors import iter_task_vectors

        weighted = dict.fromkeys(family.task_names, 0.0)
        total = 0
        for tensor in iter_task_vectors(family, device=device):
            numel = tensor.task_vectors[0].numel()
            total += numel
            for index, task in enumerate(family.task_names):
                weighted[task] += numel * tadrop_drop_rate(
                    tensor.task_vectors[index], self.a, self.b, self.eps
                )
        self._global_rates = {task: value / max(total, 1) for task, value in weighted.items()}
        return self


def tadrop(
    tau: torch.Tensor, a: float = 0.5, b: float = 0.95, eps: float = 1e-12, rescale: str = "l2"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure function: TADrop one tensor; returns (sparse_tau, keep_mask)."""
    sparsifier = TADrop(a=a, b=b, eps=eps, rescale=rescale)
    keep_mask = sparsifier.keep_mask(tau)
    return sparsifier.apply(tau, keep_mask), keep_mask

"""TIES-Merging (Yadav et al., 2023): trim, elect sign, disjoint merge.

1. Trim: any sparsifier (default: keep the 20% largest |tau| over the whole task vector, as
   published; ``Magnitude(scope="tensor")`` is mergekit's and PEFT's per-tensor trim; TADrop
   replaces it). Optional per-task weights w_k (default 1).
2. Elect: per entry, gamma = sign(sum_k v_k) (``elect="mass"``, published) or the sign held by
   more tasks (``elect="count"``), with v_k = w_k * trimmed_k (``weighted_election=True``,
   mergekit) or v_k = trimmed_k (``False``, PEFT). Where the sum is exactly zero
   (``zero_sign``): ``"positive"`` elects + (mergekit, PEFT: ``sum >= 0``);
   ``"tensor_majority"`` the majority of the tensor's elected signs (tadrop's default,
   ``"majority"`` is its old name); ``"model_majority"`` the majority over the whole model, a
   tie counting as negative (FusionBench's ``resolve_zero_signs``, needs a first pass); ``"none"``
   leaves the entry unmerged.
3. Disjoint merge of the weighted entries w_k * trimmed_k that agree with gamma (zeros never
   agree): their sum divided by how many agree (``divisor="mean"``), by the sum of their weights
   (``"weight_sum"``, mergekit's ``normalize``; a zero divisor counts as 1) or not divided
   (``"sum"``); times lambda (``scaling``).

``compat`` sets every rule a toolkit uses at once (``TIES_COMPAT``; the default trim follows
it too, see ``magnitude.TRIM_COMPAT``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

from tadrop.merge.base import MergeMethod, SparsifiedTensor, broadcast_weights, stack_weights
from tadrop.params import param_specs
from tadrop.sparsify.magnitude import Magnitude

if TYPE_CHECKING:
    from tadrop.sparsify.base import Sparsifier
    from tadrop.task_vectors import ModelFamily

ELECT_MODES = ("mass", "count")
ZERO_SIGN_MODES = ("tensor_majority", "majority", "model_majority", "positive", "none")
DIVISORS = ("mean", "sum", "weight_sum")
# compat -> the TIES rules that toolkit uses (its trim: magnitude.TRIM_COMPAT)
TIES_COMPAT: dict[str, dict[str, object]] = {
    "mergekit": {"zero_sign": "positive", "divisor": "weight_sum", "weighted_election": True},
    "peft": {"zero_sign": "positive", "divisor": "mean", "weighted_election": False},
    "fusion_bench": {"zero_sign": "model_majority", "divisor": "sum", "weighted_election": False},
}


def vote(trimmed: torch.Tensor, elect: str = "mass") -> torch.Tensor:
    """The (*shape) vote whose sign is gamma: sum_k v_k (mass) or sum_k sign(v_k) (count)."""
    return trimmed.sum(dim=0) if elect == "mass" else torch.sign(trimmed).sum(dim=0)


def elect_signs(
    trimmed: torch.Tensor,
    elect: str = "mass",
    zero_sign: str = "tensor_majority",
    *,
    model_sign: float = 1.0,
) -> torch.Tensor:
    """gamma: (*shape) in {-1, 0, +1} from the (K, *shape) trimmed (weighted) task vectors.
    ``model_sign``: the sign a zero vote takes under ``"model_majority"``."""
    signs = torch.sign(vote(trimmed, elect))
    if zero_sign in ("tensor_majority", "majority"):
        fill = 1.0 if float(signs.sum()) >= 0 else -1.0
    elif zero_sign == "positive":
        fill = 1.0
    elif zero_sign == "model_majority":
        fill = model_sign
    else:
        return signs
    signs.add_(signs == 0, alpha=fill)  # 0 -> fill; 3x faster than masked_fill_
    return signs


def disjoint_merge(
    trimmed: torch.Tensor,
    signs: torch.Tensor,
    divisor: str = "mean",
    weights: torch.Tensor | None = None,
    *,
    weighted: bool = False,
) -> torch.Tensor:
    """Combine the entries that agree with the elected sign (zeros never agree).

    ``weights``: (K,) per-task weights (default 1). ``weighted=False``: each agreeing entry is
    multiplied by its task's weight in the sum (PEFT); ``True``: ``trimmed`` already holds
    w_k * tau_k (mergekit), so the weights enter only the ``weight_sum`` divisor."""
    # gamma * tau_k > 0 exactly where tau_k agrees; clamped, it is |tau_k| on agreeing entries and
    # 0 elsewhere, so gamma * sum_k clamp(gamma * tau_k, 0) is the sum of the agreeing tau_k
    # (negation is exact). Task by task into (*shape) accumulators: no (K, *shape) temporary.
    total = torch.zeros_like(signs)
    count = torch.zeros_like(signs) if divisor != "sum" else None
    agreeing_magnitude = torch.empty_like(signs)
    agree = torch.empty_like(signs)  # 1.0 / 0.0: adding a bool tensor is 10x slower on a CPU
    for index, task_vector in enumerate(trimmed):
        weight = 1.0 if weights is None else float(weights[index])
        torch.mul(task_vector, signs, out=agreeing_magnitude)
        if count is not None:
            torch.gt(agreeing_magnitude, 0, out=agree)
            count.add_(agree, alpha=weight if divisor == "weight_sum" else 1.0)
        total.add_(agreeing_magnitude.clamp_(min=0), alpha=1.0 if weighted else weight)
    total.mul_(signs)
    if count is None:
        return total
    if divisor == "weight_sum":  # mergekit: a zero divisor counts as 1
        return total.div_(count.masked_fill_(count == 0, 1.0))
    return total.div_(count.clamp_(min=1))


class TIES(MergeMethod):
    name: ClassVar[str] = "ties"
    _model_sign: float = 1.0  # set by fit (zero_sign="model_majority"); __init__ only stores

    def __init__(
        self,
        scaling: float = 1.0,
        elect: str = "mass",
        zero_sign: str = "tensor_majority",
        divisor: str = "mean",
        weights: dict[str, float] | None = None,
        weighted_election: bool = True,
        compat: str | None = None,
    ) -> None:
        self.scaling = scaling
        self.elect = elect
        self.zero_sign = zero_sign
        self.divisor = divisor
        self.weights = weights
        self.weighted_election = weighted_election
        self.compat = compat

    def default_sparsifier(self) -> Sparsifier:
        if self.compat is None:
            return Magnitude(density=0.2, scope="global")
        return Magnitude(density=0.2, compat=self.compat)

    def rules(self) -> dict[str, object]:
        """zero_sign, divisor and weighted_election in effect (``compat`` sets all three)."""
        own = {key: getattr(self, key) for key in ("zero_sign", "divisor", "weighted_election")}
        if self.compat is None:
            return own
        preset = TIES_COMPAT[self.compat]
        specs = param_specs(TIES)
        for key, value in own.items():
            if value not in (specs[key].default, preset[key]):
                raise ValueError(
                    f"TIES compat={self.compat!r} sets {key}={preset[key]!r}, but {key}="
                    f"{value!r} was given too; remove one of compat and {key}."
                )
        return dict(preset)

    def validate(self) -> None:
        if self.compat is not None and self.compat not in TIES_COMPAT:
            raise ValueError(
                f"TIES compat={self.compat!r} is not allowed; use one of {tuple(TIES_COMPAT)}."
            )
        rules = self.rules()
        for what, value, allowed in (
            ("elect", self.elect, ELECT_MODES),
            ("zero_sign", rules["zero_sign"], ZERO_SIGN_MODES),
            ("divisor", rules["divisor"], DIVISORS),
            ("weighted_election", rules["weighted_election"], (True, False)),
        ):
            if value not in allowed:
                raise ValueError(f"TIES {what}={value!r} is not allowed; use one of {allowed}.")

    def fit(
        self,
        family: ModelFamily,
        sparsifier: Sparsifier | None,
        *,
        device: str | torch.device = "auto",
    ) -> None:
        """``zero_sign="model_majority"``: a first pass sums the elected signs of every entry."""
        if self.rules()["zero_sign"] != "model_majority":
            return
        from tadrop.merge.base import iter_sparsified

        total = 0.0
        for tensor in iter_sparsified(family, sparsifier, device=device):
            total += float(torch.sign(vote(self._voters(tensor), self.elect)).sum())
        self._model_sign = 1.0 if total > 0 else -1.0  # a tie selects the negative entries

    def _weights(self, tensor: SparsifiedTensor) -> torch.Tensor | None:
        if self.weights is None:
            return None
        return stack_weights(self.weights, tensor.task_names, tensor.sparse.device)

    def _voters(self, tensor: SparsifiedTensor) -> torch.Tensor:
        weights = self._weights(tensor)
        if weights is None or not self.rules()["weighted_election"]:
            return tensor.sparse
        return tensor.sparse * broadcast_weights(weights, tensor.sparse)

    def merge_tensor(self, tensor: SparsifiedTensor) -> torch.Tensor:
        rules = self.rules()
        voters = self._voters(tensor)
        signs = elect_signs(voters, self.elect, rules["zero_sign"], model_sign=self._model_sign)
        weights, weighted = self._weights(tensor), voters is not tensor.sparse
        merged = disjoint_merge(voters, signs, rules["divisor"], weights, weighted=weighted)
        return self.scaling * merged


def ties_merge(
    trimmed_task_vectors: torch.Tensor,
    scaling: float = 1.0,
    elect: str = "mass",
    divisor: str = "mean",
    zero_sign: str = "tensor_majority",
) -> torch.Tensor:
    """Pure function on one (K, *shape) stack of already trimmed task vectors: the merged delta."""
    signs = elect_signs(trimmed_task_vectors, elect, zero_sign)
    return scaling * disjoint_merge(trimmed_task_vectors, signs, divisor)

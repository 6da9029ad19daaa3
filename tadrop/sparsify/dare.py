"""DARE (Yu et al., 2024): drop each entry with probability p, rescale kept ones by 1/(1 - p).

``density`` (keep probability, every peer's parameter: mergekit, PEFT, FusionBench) may be given
instead of ``p``: p = 1 - density. Giving a ``p`` other than its default together with
``density`` is an error. The random draw is seeded per (seed, task, tensor name), so a run is
repeatable and does not depend on the order tensors are visited in.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from tadrop.params import FRACTION, PROBABILITY, ParameterError, Range
from tadrop.sparsify.base import Sparsifier, seeded_uniform

DEFAULT_P = 0.9


class DARE(Sparsifier):
    name: ClassVar[str] = "dare"
    param_ranges: ClassVar[dict[str, Range]] = {"p": PROBABILITY, "density": FRACTION}
    # keys that say the same thing: a config may give only one of them
    exclusive_params: ClassVar[tuple[tuple[str, str], ...]] = (("p", "density"),)

    def __init__(
        self,
        p: float = DEFAULT_P,
        seed: int = 0,
        rescale: str = "inverse",
        density: float | None = None,
    ) -> None:
        self.p = p
        self.seed = seed
        self.rescale = rescale
        self.density = density

    @property
    def drop_probability(self) -> float:
        """p, or 1 - density when density is given."""
        return self.p if self.density is None else 1.0 - self.density

    def validate(self) -> None:
        super().validate()  # each parameter against param_ranges
        if self.density is not None and self.p != DEFAULT_P:
            raise ParameterError(
                "density",
                f"DARE got both p={self.p!r} and density={self.density!r}; density = 1 - p, "
                "so give only one of the two keys.",
            )

    def keep_mask(self, tau: torch.Tensor, *, name: str = "", task: str = "") -> torch.Tensor:
        self.validate()
        return seeded_uniform(tau, self.seed, task, name) >= self.drop_probability

    def rescale_factor(self, tau: torch.Tensor, keep_mask: torch.Tensor) -> float:
        if self.rescale == "inverse":
            # the published factor uses p, not the realised rate
            return 1.0 / (1.0 - self.drop_probability)
        return super().rescale_factor(tau, keep_mask)


def dare(tau: torch.Tensor, p: float, seed: int = 0, name: str = "") -> torch.Tensor:
    """Pure function: DARE one tensor; returns the sparse, rescaled task vector."""
    sparsifier = DARE(p=p, seed=seed)
    return sparsifier.apply(tau, sparsifier.keep_mask(tau, name=name))

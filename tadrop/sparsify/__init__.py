"""Sparsifiers: each returns a boolean keep-mask; applying and rescaling are shared code."""

from tadrop.sparsify.base import RESCALE_MODES, Sparsifier, rescale_factor, sparsify
from tadrop.sparsify.breadcrumbs import Breadcrumbs
from tadrop.sparsify.dare import DARE, dare
from tadrop.sparsify.della import DELLA
from tadrop.sparsify.magnitude import Magnitude, magnitude_keep_mask
from tadrop.sparsify.tadrop_drop import TADrop, check_quantiles, tadrop, tadrop_drop_rate

__all__ = [
    "DARE",
    "DELLA",
    "RESCALE_MODES",
    "Breadcrumbs",
    "Magnitude",
    "Sparsifier",
    "TADrop",
    "check_quantiles",
    "dare",
    "magnitude_keep_mask",
    "rescale_factor",
    "sparsify",
    "tadrop",
    "tadrop_drop_rate",
]

"""Exact order statistics of tensors of any size and float dtype, on CPU and CUDA.

``quantiles`` equals ``torch.quantile(values.double().flatten(), q)`` (linear interpolation)
wherever that works, and keeps working far beyond its 2^24-element limit and for bf16/fp16.
``drop_smallest_abs`` drops the n smallest |tau| in (about) one pass, where n comes from
quantiles of |tau| through a callback: TADrop passes its rule (``tadrop.sparsify.tadrop_drop``);
this engine knows no drop formula.

How the large-tensor path stays exact (measurements in bench/RESULTS.md):
1. A fixed, seeded, stratified random sample (one random entry per stratum of n/m entries; never
   a strided one, which is biased when columns have different scales) gives, for each wanted
   rank k, a value bracket (lo, hi] that holds the k-th smallest entry with overwhelming
   probability (``brackets.py``).
2. One fused pass over the data counts the entries < lo and <= lo of each bracket, writes a byte
   mask of the entries inside any bracket (and, when dropping, the keep mask "|tau| > hi of the
   drop bracket" plus float64 sums of squares).  On CPU the pass is a torch.compile'd kernel
   (``kernel.py``, compiled once per process and dtype, a few seconds; set
   TADROP_QUANTILES_COMPILE=0 to skip it); if compiling fails, and on CUDA, the same pass runs
   as chunked eager torch ops (``passes.py``).
3. The few entries inside the brackets (about 1%) are gathered and sorted; each wanted rank is
   then an index into them, and the keep mask is fixed up for them alone (ties at the
   threshold in flat order).  The kept norm is the pass's sum above the bracket plus theirs.
4. If a count shows that a bracket missed its rank, the pass is repeated with a wider bracket
   and finally with a bracket between two values whose counts are known: the answer is exact
   whatever the data (ties, constants, adversarial orderings); only the time changes.

Tensors of up to 2^22 entries on the CPU (2^16 on CUDA) and requests for more than three
separate quantiles take a whole-tensor route instead (``selection.py``): numpy selection
(single-rank partitions) of a copy of the values, then one comparison pass for the mask (CUDA:
a full sort). Scratch buffers are reused per thread: ``release_buffers()`` frees them.

Many ranks at once (the statistics table's 1001-point sketch of |tau|): ``radix.py`` selects
them on the bit patterns of |x| (a histogram of the high bits, then of the next bits inside
the buckets that hold a wanted rank, down to full resolution: nothing is sorted), in a small
C kernel (``native.py``) built once per machine; the moments ride along in its first pass.
The kernel can read a task vector from its two tensors (task - base in float32).
"""

from tadrop.quantiles.api import (
    AbsDropResult,
    abs_quantiles,
    drop_smallest_abs,
    kth_smallest,
    quantiles,
    smallest_abs_keep_mask,
    smallest_k_keep_mask,
)
from tadrop.quantiles.buffers import release_buffers
from tadrop.quantiles.common import (
    QuantileInputError,
    RankValues,
    interpolate,
    interpolation_ranks,
)

__all__ = [
    "AbsDropResult",
    "QuantileInputError",
    "RankValues",
    "abs_quantiles",
    "drop_smallest_abs",
    "interpolate",
    "interpolation_ranks",
    "kth_smallest",
    "quantiles",
    "release_buffers",
    "smallest_abs_keep_mask",
    "smallest_k_keep_mask",
]

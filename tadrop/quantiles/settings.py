"""The engine's tunables: route limits, chunk sizes and bracket widths (tests shrink them to
send small tensors down every route)."""

SAMPLE_SEED = 20250806
# Bracket half-widths, in standard deviations of the sample rank, for attempts 1 and 2; the
# third attempt uses a bracket between two values whose exact counts are known.
BRACKET_SIGMAS = (3.5, 14.0)
DIRECT_MAX_NUMEL = 1 << 16  # at or below (CUDA): stable sort of everything
SORT_MAX_NUMEL = 1 << 22  # at or below (CPU): numpy selection over the whole tensor
# Above it the compiled pass is 2-4x faster than the numpy route, once compiled (~3 s a
# process). Until then tensors up to SORT_BEFORE_COMPILE_NUMEL take the numpy route, and the
# pass is compiled only when the entries handled so far would have paid for the compilation
# (a small merge never compiles).
SORT_BEFORE_COMPILE_NUMEL = 1 << 25
COMPILE_PAYS_OFF_NUMEL = 1 << 30
SORT_WITHOUT_COMPILER_MAX_NUMEL = 1 << 27  # no compiler: the numpy route beats the eager pass
FUSED_MIN_NUMEL = 1 << 18  # at or above (on CPU): the torch.compile'd pass
FUSED_ROW = 1 << 15  # row length of the compiled pass (per-row int32 counts)
EAGER_CHUNK = 1 << 22  # chunk length of the eager pass
# At or above this share of exact zeros among the magnitudes, the numpy route selects among the
# nonzero entries only: numpy's partition falls back to a full sort when one value fills most of
# a segment (2.4M entries: 1.5 ms, 37 ms with 95% zeros, 46 ms for a bf16 task vector with 60%).
ZERO_SHARE_TO_COMPACT = 1 / 16
TIE_CHUNK = 1 << 20  # chunk length when the numpy route keeps ties in flat order
SLOTS = 3  # brackets per pass: two quantiles and the drop threshold


def attempts() -> int:
    """Passes tried before the exact-count bracket: one per sample width, plus that one."""
    return len(BRACKET_SIGMAS) + 1

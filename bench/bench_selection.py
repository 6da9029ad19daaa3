"""Merge-time exact selections with and without the fused C mask pass, timed in one run.

Run: python3 bench/bench_selection.py [--sizes 1M,16M,64M] [--dtypes float32,bfloat16]

Times ``tadrop_keep_mask(t, out=...)`` (TADrop: Q_a, Q_b, the drop threshold, mask and L2
sums) and the magnitude trim ``smallest_abs_keep_mask(t, n - k, out=...)`` (TIES, density
0.2) on heavy-tailed tensors (``bench_quantiles.heavy_tailed``), each on four routes:
``fused`` (numpy single-rank partitions + the C mask pass, ``selection.cut_by_kernel``),
``numpy`` (the same partitions with numpy's mask and sums: the route before), ``pass``
(sampled brackets + the compiled counting pass, a long merge's steady state) and ``default``
(the engine's own choice). Ratios are to one read pass (``t.sum()``) of the same repeat;
medians over repeats. Masks of every route are checked equal to the fused route's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quantiles import heavy_tailed, parse_size, routed, time_ratios  # noqa: E402

from tadrop.quantiles import selection, smallest_abs_keep_mask  # noqa: E402
from tadrop.sparsify.magnitude import keep_count  # noqa: E402
from tadrop.sparsify.tadrop_drop import tadrop_keep_mask  # noqa: E402


def fused_off(fn):
    """fn with the fused C mask pass switched off (private switch: this bench only)."""

    def run():
        saved = selection.fused_mask_supports
        selection.fused_mask_supports = lambda work: False
        try:
            return fn()
        finally:
            selection.fused_mask_supports = saved

    return run


def methods_for(t: torch.Tensor, out: torch.Tensor) -> dict:
    n_drop = t.numel() - keep_count(0.2, t.numel())
    ops = {
        "tadrop": lambda: tadrop_keep_mask(t, out=out)[0],
        "trim": lambda: smallest_abs_keep_mask(t, n_drop, out=out),
    }
    # a throw-away first entry after the read passes. Caveat: in this sequence "tadrop fused"
    # at 16M timed 65 ms while an alternating A/B of the two numpy routes alone (hselect's
    # notes, ab_fused.py) gave 34-40 ms fused vs 50-53 ms numpy: compare routes with care
    methods = {"(settle)": lambda: t.sum()}
    for op, fn in ops.items():
        methods[f"{op} fused"] = routed("sort", fn)
        methods[f"{op} numpy"] = fused_off(routed("sort", fn))
        methods[f"{op} pass"] = routed("pass", fn)
        methods[f"{op} default"] = fn
    return methods


def check_equal(methods: dict, out: torch.Tensor) -> None:
    for op in ("tadrop", "trim"):
        expected = methods[f"{op} fused"]().clone()
        for route in ("numpy", "pass", "default"):
            if not torch.equal(methods[f"{op} {route}"](), expected):
                raise SystemExit(f"{op} {route}: the mask differs from the fused route's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,16M,64M")
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}, threads {torch.get_num_threads()}")
    for dtype_name in args.dtypes.split(","):
        for size in args.sizes.split(","):
            n = parse_size(size)
            t = heavy_tailed(n, getattr(torch, dtype_name))
            out = torch.empty(n, dtype=torch.bool)
            methods = methods_for(t, out)
            check_equal(methods, out)
            results = time_ratios(methods, t, args.repeats)
            read = results["read pass"][0]
            print(f"\n{dtype_name} {size} ({n} entries): read pass {read * 1e3:.1f} ms")
            for name, (seconds, ratio) in results.items():
                if name not in ("read pass", "(settle)"):
                    print(f"  {name:24s} {seconds * 1e3:9.1f} ms  {ratio:7.1f}x read")
            print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()

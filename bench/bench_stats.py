"""The statistics row of one tensor against the memory-bandwidth floor, idle and under load.

Run: python3 bench/bench_stats.py [--sizes 16M,64M,256M] [--dtypes float32,bfloat16]
     [--reference-max 64M] [--repeats 5] [--load idle,loaded]

For heavy-tailed fp32 and bf16 tensors (``bench_quantiles.heavy_tailed``: Laplace entries
times log-uniform column scales) it times, against one read pass (``t.sum()``, the least of
three back-to-back ones in the same repeat):
- ``tensor_stats(t)``: the whole row (moments, Q_a, Q_b, d, the exact 1001-point sketch) by
  the radix passes;
- the sort-based reference (today's route before the radix passes: a full sort of |t|), up to
  ``--reference-max`` entries (it needs minutes at 256M);
- ``tadrop_keep_mask(t)`` (the TADrop op, warmed up: the compiled pass).
Each number is the median over repeats of (time / read pass of that repeat). Every case runs
twice: on the machine as it is ("idle": nothing started by the bench) and under a background
load the bench starts itself ("loaded": one spinning process per CPU core,
``background_load.py``). The radix sketch is
checked bit for bit against the sort reference wherever the reference runs. The cold cost of
building the C kernel (a fresh cache folder) is timed once.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from background_load import CONDITIONS, condition, parse_conditions  # noqa: E402
from bench_quantiles import heavy_tailed, parse_size, time_ratios  # noqa: E402

from tadrop.quantiles import native  # noqa: E402
from tadrop.sparsify.tadrop_drop import tadrop_keep_mask  # noqa: E402
from tadrop.stats import row as stats_row  # noqa: E402
from tadrop.stats import tensor_stats  # noqa: E402


def sort_reference(t: torch.Tensor) -> dict:
    """tensor_stats through the full-sort route (the reference the tests also use)."""
    saved = stats_row.SORT_MAX_NUMEL
    stats_row.SORT_MAX_NUMEL = 1 << 62
    try:
        return tensor_stats(t)
    finally:
        stats_row.SORT_MAX_NUMEL = saved


def cold_kernel_build_seconds() -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        native._compile(Path(folder) / "radix.so")
        return time.perf_counter() - start


def bench_case(t: torch.Tensor, repeats: int, with_reference: bool, load: str) -> list[str]:
    methods = {
        "tensor_stats (radix passes)": lambda: tensor_stats(t),
        "tadrop_keep_mask": lambda: tadrop_keep_mask(t),
    }
    with condition(load):
        timings = time_ratios(methods, t, repeats)
        if with_reference:
            timings.update(
                {
                    k: v
                    for k, v in time_ratios(
                        {"sort reference": lambda: sort_reference(t)}, t, 1
                    ).items()
                    if k != "read pass"
                }
            )
    name = f"{str(t.dtype).removeprefix('torch.')} {t.numel() >> 20}M {load}"
    lines = []
    for method, (seconds, ratio) in timings.items():
        shown = "1.00x" if method == "read pass" else f"{ratio:.2f}x"
        lines.append(f"| {name} | {method} | {seconds * 1e3:.1f} ms | {shown} |")
    return lines


def check_exact(t: torch.Tensor) -> str:
    fast, reference = tensor_stats(t), sort_reference(t)
    same = np.array_equal(fast["sketch"], reference["sketch"])
    return "sketch bit-identical to the sort" if same else "SKETCH MISMATCH"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16M,64M,256M")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--reference-max", default="64M", help="sort reference up to here")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--load", default=",".join(CONDITIONS), help="idle,loaded or one")
    args = parser.parse_args()
    reference_max = parse_size(args.reference_max)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch "
        f"{torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, load avg before "
        f"{os.getloadavg()[0]:.1f}, {torch.get_num_threads()} torch threads"
    )
    print(f"# C kernel build, cold: {cold_kernel_build_seconds():.2f} s")
    native.load()
    print("| case | method | median time | / read pass |\n| --- | --- | ---: | ---: |")
    verdicts = []
    for dtype_name in args.dtypes.split(","):
        for size in args.sizes.split(","):
            t = heavy_tailed(parse_size(size), getattr(torch, dtype_name))
            with_reference = t.numel() <= reference_max
            for load in parse_conditions(args.load):
                for line in bench_case(t, args.repeats, with_reference, load):
                    print(line, flush=True)
            if with_reference:
                verdicts.append(f"exactness {dtype_name} {size}: {check_exact(t)}")
            del t
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()

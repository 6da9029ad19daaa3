"""Where the statistics row's time goes: each C pass of ``tadrop.quantiles.radix`` timed alone.

Run: python3 bench/profile_stats.py [--sizes 64M] [--dtypes float32,bfloat16] [--repeats 7]
     [--threads 2]

For heavy-tailed tensors (``bench_quantiles.heavy_tailed``) it runs ``tensor_stats`` with the
kernel library wrapped so that every pass (``radix_pass1/2/3``, ``bf16_histogram``) is timed,
and prints the best of ``--repeats`` for each pass, the Python around them (the whole row
minus its passes) and one read pass (``t.sum()``, torch's threads), all as ratios to that
read pass. ``--threads`` sets both torch's threads and the kernel's parts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_quantiles import heavy_tailed, parse_size  # noqa: E402

from tadrop.quantiles import native  # noqa: E402
from tadrop.stats import tensor_stats  # noqa: E402

PASSES = ("radix_pass1", "radix_pass2", "radix_pass3", "bf16_histogram")


class TimedLibrary:
    """The kernel library with each pass's wall time added to ``seconds[name]``."""

    def __init__(self, library) -> None:
        self.library = library
        self.seconds: dict[str, float] = defaultdict(float)

    def __getattr__(self, name: str):
        function = getattr(self.library, name)
        if name not in PASSES:
            return function

        def timed(*args):
            started = time.perf_counter()
            function(*args)
            self.seconds[name] += time.perf_counter() - started

        return timed


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def profile(t: torch.Tensor, repeats: int) -> dict[str, float]:
    timed = TimedLibrary(native.load())
    original = native.load
    native.load = lambda inputs=native.ONE_TENSOR: timed  # what radix asks for
    try:
        best: dict[str, float] = {}
        for _ in range(repeats):
            timed.seconds.clear()
            started = time.perf_counter()
            tensor_stats(t)
            whole = time.perf_counter() - started
            rows = {**timed.seconds, "python around": whole - sum(timed.seconds.values())}
            rows["whole row"] = whole
            best = {k: min(v, best.get(k, v)) for k, v in rows.items()}
    finally:
        native.load = original
    best["read pass"] = best_of(repeats, t.sum)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64M")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {args.threads} threads, best of {args.repeats}")
    print("| case | step | ms | / read pass |\n| --- | --- | ---: | ---: |")
    for dtype in args.dtypes.split(","):
        for size in args.sizes.split(","):
            t = heavy_tailed(parse_size(size), getattr(torch, dtype))
            best = profile(t, args.repeats)
            for step, seconds in best.items():
                ratio = seconds / best["read pass"]
                print(f"| {dtype} {size} | {step} | {seconds * 1e3:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()

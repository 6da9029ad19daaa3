"""Exact quantiles and the whole TADrop op near the memory-bandwidth floor.

Run: python3 bench/bench_quantiles.py [--sizes 1M,16M,64M,256M] [--quick] [--device cuda]

For fp32 and bf16 heavy-tailed tensors (Laplace entries times log-uniform column scales) it
times, against one read pass (``t.sum()``) timed in the same repeat:
- ours: ``abs_quantiles(t, [0.5, 0.95])`` and ``tadrop_keep_mask(t)`` (fresh mask, and into a
  reused ``out=`` mask; also through the eager pass used when torch.compile is unavailable);
- torch.quantile (only up to 2^24 entries; bf16 is converted to fp32 first, timed),
  torch.kthvalue twice, numpy nested single-k partitions (Q50, then Q95 on the upper part).
Every number is the median over repeats of (method time / read-pass time of that repeat; the
read pass is the least of three back-to-back ones), so a busy machine moves both together. The CSV goes to bench/out/quantiles.csv. Exactness is
checked here too: quantiles against torch.quantile (<= 2^24) or numpy partition, and the kept
set against a full stable sort at sizes up to 16M (references computed on the CPU).
With --device cuda the tensors live on the GPU, the read pass is a device sum, every timing
synchronizes, and numpy's partition (CPU only) is left out.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tadrop.quantiles import abs_quantiles  # noqa: E402
from tadrop.quantiles import settings as engine_limits  # noqa: E402
from tadrop.quantiles.kernel import COMPILER  # noqa: E402
from tadrop.sparsify.tadrop_drop import tadrop_keep_mask  # noqa: E402

QS = [0.5, 0.95]
TORCH_QUANTILE_MAX = 1 << 24
KTHVALUE_MAX = 1 << 26  # kthvalue copies values and int64 indices: ~3 extra GiB at 256M fp32
FULL_SORT_CHECK_MAX = 1 << 24
SORT_ROUTE_MAX = 1 << 26  # the sort route is timed up to here (it needs ~8 bytes an entry)
OUT_CSV = Path(__file__).resolve().parent / "out" / "quantiles.csv"


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def heavy_tailed(n: int, dtype: torch.dtype, seed: int = 0, columns: int = 4096) -> torch.Tensor:
    """Laplace entries times per-column scales from 0.1 to 10, made in chunks (low peak RAM)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(n, dtype=dtype)
    scales = torch.logspace(-1, 1, columns)
    chunk = 1 << 22  # a multiple of columns
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        values = torch.empty(stop - start).exponential_(generator=g)
        values *= torch.randint(0, 2, (stop - start,), generator=g) * 2.0 - 1.0
        values = (
            (values.view(-1, columns) * scales).view(-1)
            if values.numel() % columns == 0
            else values
        )
        out[start:stop] = values
    return out


def numpy_nested_partition(t: torch.Tensor) -> list[float]:
    """Exact Q50 and Q95 of |t| with single-k partitions, the upper one on the upper part."""
    magnitude = np.abs(t.float().numpy() if t.dtype != torch.float32 else t.numpy())
    n = magnitude.size
    results = []
    segment, offset = magnitude, 0
    for q in QS:
        position = q * (n - 1)
        low = math.floor(position)
        segment.partition(low - offset)
        below = float(segment[low - offset])
        above = float(segment[low - offset + 1 :].min()) if low + 1 < n else below
        as_double = torch.tensor([below, above], dtype=torch.float64)
        results.append(as_double[0].lerp(as_double[1], position - low).item())  # as torch.quantile
        segment, offset = segment[low - offset :], low
    return results


def torch_kthvalue_twice(t: torch.Tensor) -> None:
    magnitude = t.float().abs()
    n = magnitude.numel()
    for q in QS:
        torch.kthvalue(magnitude, math.floor(q * (n - 1)) + 1)


def check_exact(t: torch.Tensor, ours_q: torch.Tensor, keep: torch.Tensor, drop_rate: float) -> str:
    t, ours_q, keep = t.cpu(), ours_q.cpu(), keep.cpu()
    magnitude = t.float().abs()
    n = t.numel()
    if n <= TORCH_QUANTILE_MAX:
        reference = torch.quantile(magnitude.double(), torch.tensor(QS, dtype=torch.float64))
    else:
        reference = torch.tensor(numpy_nested_partition(t), dtype=torch.float64)
    q_ok = torch.equal(ours_q, reference)
    n_drop = round(drop_rate * n)
    count_ok = n - int(torch.count_nonzero(keep)) == n_drop
    if n > FULL_SORT_CHECK_MAX:
        return f"quantiles {'ok' if q_ok else 'MISMATCH'}, drop count {'ok' if count_ok else 'BAD'}"
    expected = np.ones(n, dtype=bool)
    expected[np.argsort(magnitude.numpy(), kind="stable")[:n_drop]] = False
    mask_ok = np.array_equal(keep.numpy().reshape(-1), expected)
    return f"quantiles {'ok' if q_ok else 'MISMATCH'}, kept set {'ok' if mask_ok else 'MISMATCH'}"


def synchronize(t: torch.Tensor) -> None:
    if t.is_cuda:
        torch.cuda.synchronize(t.device)


def time_ratios(methods: dict, t: torch.Tensor, repeats: int) -> dict[str, tuple[float, float]]:
    """method -> (median seconds, median ratio to the read pass of the same repeat)."""
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    ratios: dict[str, list[float]] = {name: [] for name in methods}
    for fn in methods.values():  # warm-up (compilation, caches)
        fn()
    for _ in range(repeats):
        read = math.inf
        for _ in range(3):  # the floor: least of three back-to-back read passes
            synchronize(t)
            start = time.perf_counter()
            t.sum()
            synchronize(t)
            read = min(read, time.perf_counter() - start)
        for name, fn in methods.items():
            synchronize(t)
            start = time.perf_counter()
            fn()
            synchronize(t)
            elapsed = time.perf_counter() - start
            seconds[name].append(elapsed)
            ratios[name].append(elapsed / read)
        seconds.setdefault("read pass", []).append(read)
        ratios.setdefault("read pass", []).append(1.0)
    return {
        name: (statistics.median(seconds[name]), statistics.median(ratios[name]))
        for name in seconds
    }


def eager_tadrop(t: torch.Tensor, out: torch.Tensor) -> None:
    """tadrop_keep_mask through the chunked eager pass (the engine's no-compiler fallback)."""
    enabled, COMPILER.enabled = COMPILER.enabled, False  # private switch: this bench only
    try:
        tadrop_keep_mask(t, out=out)
    finally:
        COMPILER.enabled = enabled


def routed(route: str, fn):
    """fn run with the engine forced onto one route (private switches: this bench only).
    "pass": sampled brackets + the compiled counting pass (the steady state of a long merge);
    "sort": numpy's whole-tensor sort (what a process uses for mid-size tensors until the
    compilation has paid off, and always up to 2^22 entries)."""
    limits = {"pass": (0, 0), "sort": (1 << 40, 1 << 40)}[route]

    def run():
        saved = (engine_limits.SORT_MAX_NUMEL, engine_limits.SORT_BEFORE_COMPILE_NUMEL)
        engine_limits.SORT_MAX_NUMEL, engine_limits.SORT_BEFORE_COMPILE_NUMEL = limits
        try:
            return fn()
        finally:
            engine_limits.SORT_MAX_NUMEL, engine_limits.SORT_BEFORE_COMPILE_NUMEL = saved

    return run


def bench_one(
    n: int, dtype: torch.dtype, repeats: int, slow_repeats: int, device: str
) -> list[dict]:
    t = heavy_tailed(n, dtype).to(device)
    out = torch.empty(n, dtype=torch.bool, device=device)
    ours_q = abs_quantiles(t, QS)
    keep, drop_rate, _ = tadrop_keep_mask(t)
    verdict = check_exact(t, ours_q, keep, drop_rate)
    del keep
    fast = {
        "ours: Q50+Q95 (compiled pass)": routed("pass", lambda: abs_quantiles(t, QS)),
        "ours: tadrop_keep_mask (compiled pass)": routed("pass", lambda: tadrop_keep_mask(t)),
        "ours: tadrop_keep_mask out= (compiled pass)": routed(
            "pass", lambda: tadrop_keep_mask(t, out=out)
        ),
    }
    if not t.is_cuda and n <= SORT_ROUTE_MAX:
        fast["ours: tadrop_keep_mask out= (numpy selection)"] = routed(
            "sort", lambda: tadrop_keep_mask(t, out=out)
        )
    slow = {}
    if not t.is_cuda:
        slow["ours, eager fallback: tadrop out="] = lambda: eager_tadrop(t, out)
        slow["numpy nested partition"] = lambda: numpy_nested_partition(t)
    if n <= TORCH_QUANTILE_MAX:
        qs = torch.tensor(QS, device=device)
        slow["torch.quantile"] = lambda: torch.quantile(t.float().abs(), qs)
    if n <= KTHVALUE_MAX:
        slow["torch.kthvalue x2"] = lambda: torch_kthvalue_twice(t)
    timings = time_ratios(fast, t, repeats)
    timings.update(
        {k: v for k, v in time_ratios(slow, t, slow_repeats).items() if k != "read pass"}
    )
    dtype_name = str(dtype).removeprefix("torch.")
    return [
        {
            "device": device,
            "dtype": dtype_name,
            "numel": n,
            "method": name,
            "seconds": f"{sec:.4f}",
            "ratio_to_read": f"{ratio:.2f}",
            "drop_rate": f"{drop_rate:.6f}",
            "exactness": verdict,
        }
        for name, (sec, ratio) in timings.items()
    ]


def print_table(rows: list[dict]) -> None:
    methods = list(dict.fromkeys(row["method"] for row in rows))
    cases = list(dict.fromkeys((row["dtype"], row["numel"]) for row in rows))
    header = "| method | " + " | ".join(f"{d} {n >> 20}M" for d, n in cases) + " |"
    print(header)
    print("|" + " --- |" * (len(cases) + 1))
    for method in methods:
        cells = []
        for case in cases:
            match = [r for r in rows if (r["dtype"], r["numel"]) == case and r["method"] == method]
            if not match:
                cells.append("-")
            elif method == "read pass":
                cells.append(f"{float(match[0]['seconds']) * 1e3:.1f} ms")
            else:
                cells.append(f"{match[0]['ratio_to_read']}x")
        print(f"| {method} | " + " | ".join(cells) + " |")
    for case in cases:
        verdict = next(r["exactness"] for r in rows if (r["dtype"], r["numel"]) == case)
        print(f"exactness {case[0]} {case[1] >> 20}M: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,16M,64M,256M", help="comma list, e.g. 1M,16M")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--quick", action="store_true", help="1M and 16M, fewer repeats")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in ("1M,16M" if args.quick else args.sizes).split(",")]
    repeats, slow_repeats = (3, 1) if args.quick else (7, 3)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch "
        f"{torch.__version__}, numpy {np.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"load avg {os.getloadavg()[0]:.1f}, {torch.get_num_threads()} torch threads"
        + (f", GPU {torch.cuda.get_device_name()}" if args.device != "cpu" else "")
    )
    rows = []
    for dtype_name in args.dtypes.split(","):
        for n in sizes:
            rows += bench_one(n, getattr(torch, dtype_name), repeats, slow_repeats, args.device)
            print(f"done {dtype_name} {n >> 20}M", flush=True)
    out_csv = OUT_CSV if args.device == "cpu" else OUT_CSV.with_name("quantiles_cuda.csv")
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print_table(rows)
    print(f"wrote {out_csv}")


if __name__ == "__main__":
    main()

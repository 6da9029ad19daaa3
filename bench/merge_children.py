"""The child processes of bench_merge.py: ``python3 bench/merge_children.py MODE ARGS...``.

- ``read DEVICE FOLDER...``: one read of every input tensor (``get`` + a sum; on a GPU also
  the host-to-device copy), as ``{"read_s", "bytes"}``.
- ``bandwidth DEVICE``: bytes per second of one read pass over a 1 GiB buffer on DEVICE.
- ``merge SPEC.json``: the same merge as ``tadrop merge`` through the library calls.

``compare_outputs`` (imported by bench_merge.py) compares two merged models entry by entry.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def read_inputs(folders: list[str], device: str) -> dict[str, float]:
    from tadrop.io import open_checkpoint

    target = torch.device(device)
    checkpoints = [open_checkpoint(folder) for folder in folders]
    total_bytes = 0
    started = time.perf_counter()
    for checkpoint in checkpoints:
        for name in checkpoint.keys():
            tensor = checkpoint.get(name).to(target)
            tensor.sum()
            total_bytes += tensor.numel() * tensor.element_size()
    synchronize(target)
    return {"read_s": time.perf_counter() - started, "bytes": total_bytes}


def device_read_bandwidth(device: str, nbytes: int = 2**30, repeats: int = 5) -> dict[str, float]:
    target = torch.device(device)
    buffer = torch.ones(nbytes // 4, dtype=torch.float32, device=target)
    buffer.sum()
    synchronize(target)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        buffer.sum()
        synchronize(target)
        best = min(best, time.perf_counter() - started)
    return {"bandwidth_bytes_per_s": nbytes / best, "pass_s": best}


def merge_with_library(spec: dict) -> dict[str, float]:
    from tadrop.merge import run_merge
    from tadrop.registry import build_merge
    from tadrop.task_vectors import load_family

    family = load_family(spec["base"], spec["models"])
    method, sparsifier = build_merge(
        spec["method"], spec["sparsifier"], spec["method_params"], spec["sparsifier_params"]
    )
    started = time.perf_counter()
    result = run_merge(family, method, sparsifier, device=spec["device"])
    merge_s = time.perf_counter() - started
    result.save(spec["output"], overwrite=True)
    return {"seconds": merge_s}


def compare_outputs(ours: Path, theirs: Path, base: Path) -> dict[str, float]:
    """Largest difference between two merged models, relative to the largest merged delta."""
    from tadrop.io import open_checkpoint

    a, b, base_checkpoint = open_checkpoint(ours), open_checkpoint(theirs), open_checkpoint(base)
    max_diff = max_delta = 0.0
    differing = total = 0
    for name in base_checkpoint.keys():
        ours_tensor, theirs_tensor = a.get(name).float(), b.get(name).float()
        difference = (ours_tensor - theirs_tensor).abs()
        max_diff = max(max_diff, float(difference.max()))
        max_delta = max(
            max_delta, float((theirs_tensor - base_checkpoint.get(name).float()).abs().max())
        )
        differing += int(torch.count_nonzero(difference > 1e-6))
        total += difference.numel()
    return {
        "max_abs_diff": max_diff,
        "max_abs_delta": max_delta,
        "frac_differing": differing / total,
    }


def main(mode: str, arguments: list[str]) -> int:
    if mode == "read":
        report = read_inputs(arguments[1:], arguments[0])
    elif mode == "bandwidth":
        report = device_read_bandwidth(arguments[0])
    elif mode == "merge":
        report = merge_with_library(json.loads(Path(arguments[0]).read_text()))
    else:
        raise SystemExit(f"unknown child mode {mode!r}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))

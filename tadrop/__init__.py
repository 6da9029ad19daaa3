"""tadrop: task-vector analysis and model merging with distribution-aware sparsification."""

import os

# Fresh multi-megabyte CPU tensors fault in 4 KiB pages; with transparent huge pages torch's
# allocator faults 2 MiB at a time (an allocate-and-fill of 245 MB: 174 ms -> 14 ms here). Read
# by torch once, when it is first imported: it only helps when tadrop is imported first (the CLI).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
# OpenMP threads that wait at a barrier spin by default. On a shared machine the core they
# spin on is the one the straggler needs: a TIES merge took 47 s with spinning threads vs 9 s
# with sleeping ones while another job kept both cores busy (bench/RESULTS.md). Read by torch's
# OpenMP runtime once, at start-up; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tadrop.version import __version__

__all__ = [
    "__version__",
    "build_merge",
    "compute_stats",
    "load_family",
    "open_checkpoint",
    "run_merge",
]


def __getattr__(name: str):
    # Convenience imports, resolved lazily so `import tadrop` stays cheap.
    if name == "load_family":
        from tadrop.task_vectors import load_family

        return load_family
    if name == "compute_stats":
        from tadrop.stats import compute_stats

        return compute_stats
    if name == "run_merge":
        from tadrop.merge import run_merge

        return run_merge
    if name == "build_merge":
        from tadrop.registry import build_merge

        return build_merge
    if name == "open_checkpoint":
        from tadrop.io import open_checkpoint

        return open_checkpoint
    raise AttributeError(f"module 'tadrop' has no attribute {name!r}")

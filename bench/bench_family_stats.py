"""Statistics of a whole family against one read of its inputs, idle and under load.

Run: python3 bench/bench_family_stats.py /work/bench_data/family-clip-vit-b32 [--load idle]
     [--routes fused,stored] [--repeats 1]

Each measurement is a fresh process (wall time of the work inside it, peak RSS of the
process from ``wait4``), so imports and the interpreter's start are not counted:
- ``read``: every input tensor of every checkpoint summed once (``merge_children.read_inputs``,
  the denominator bench_family.py and bench_merge.py use);
- ``fused``: ``compute_stats(family, cache=False)`` on the CPU: each task vector computed
  inside the statistics passes, never stored (``tadrop.stats.row.task_vector_stats``);
- ``stored``: the route before it: ``iter_task_vectors`` builds the float32 task vectors of
  each tensor, then ``tensor_stats`` on each.
The radix kernels are built before timing. Families come from make_family.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent)]

from background_load import condition, parse_conditions  # noqa: E402
from processes import child_env, last_json, run_measured, warm_page_cache  # noqa: E402

ROUTES = ("read", "fused", "stored")


def load(folder: Path):
    from tadrop.task_vectors import load_family

    spec = json.loads((folder / "family.json").read_text())
    tasks = {task: folder / sub for task, sub in spec["tasks"].items()}
    return load_family(folder / "base", tasks)


def child(route: str, folder: Path) -> dict[str, float]:
    """One route in this process; the seconds its work took."""
    from merge_children import read_inputs

    from tadrop.quantiles import native
    from tadrop.stats import compute_stats, tensor_stats
    from tadrop.task_vectors import iter_task_vectors

    for inputs in (native.ONE_TENSOR, native.FP32_PAIR, native.BF16_PAIR):
        native.load(inputs)
    if route == "read":
        folders = [str(path) for path in sorted(folder.iterdir()) if path.is_dir()]
        return {"seconds": read_inputs(folders, "cpu")["read_s"]}
    family = load(folder)
    started = time.perf_counter()
    if route == "fused":
        compute_stats(family, device="cpu", cache=False)
    else:
        for tensor in iter_task_vectors(family, device="cpu"):
            for index in range(len(family.task_names)):
                tensor_stats(tensor.task_vectors[index], name=tensor.name)
    return {"seconds": time.perf_counter() - started}


def measure(route: str, folder: Path) -> tuple[float, float]:
    command = [sys.executable, __file__, "--child", route, str(folder)]
    measured = run_measured(command, env=child_env(BENCH_DIR.parent))
    if measured.exit_code != 0:
        raise SystemExit(f"{route} failed:\n{measured.stderr}")
    return last_json(measured.stdout)["seconds"], measured.peak_rss_bytes / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", type=Path)
    parser.add_argument("--load", default="idle,loaded")
    parser.add_argument("--routes", default="fused,stored")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", choices=ROUTES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.family)))
        return
    folders = [path for path in args.family.iterdir() if path.is_dir()]
    warmed = warm_page_cache(folders)
    print(f"# {args.family.name}: {warmed / 2**30:.2f} GiB of inputs, load avg before "
          f"{os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}")  # fmt: skip
    print(
        "| condition | route | seconds | / read | peak RSS MB |\n| --- | --- | ---: | ---: | ---: |"
    )
    for name in parse_conditions(args.load):
        with condition(name):
            for _ in range(args.repeats):
                read_s, read_rss = measure("read", args.family)
                print(f"| {name} | read | {read_s:.2f} | 1.00x | {read_rss:.0f} |", flush=True)
                for route in args.routes.split(","):
                    seconds, rss = measure(route, args.family)
                    print(
                        f"| {name} | {route} | {seconds:.2f} | {seconds / read_s:.2f}x | {rss:.0f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()

"""Realistic families end to end: statistics and merges on a TinyLlama-1.1B or CLIP ViT-B/32 family.

The family is generated on demand by make_family.py (``--shape llama-1.1b``: bf16, 4 tasks,
~11 GB; ``--shape clip-vit-b32``: fp32, 8 tasks, ~3 GB) and reused. Every measurement is a
fresh process (wall time and peak RSS from ``wait4``), taken once idle and once under the
background load this script starts itself (bench/background_load.py), with ratios inside each
condition:

    stats_x_read    ``tadrop stats`` of the whole family (empty statistics cache) / one read of
                    every input tensor                                        (target <= 8)
    stats_reopen_s  the same command again: the statistics cache answers, no tensor is read
    peak_rss_mb     of each command (target: a few tensors, never a model)
    merges          TA, TIES (tensor), EMR, each with and without TADrop: wall time, x_read

    python3 bench/bench_family.py --shape clip-vit-b32 [--runs ta,emr+tadrop] [--load idle]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent)]

import pandas as pd  # noqa: E402
from background_load import condition, parse_conditions  # noqa: E402
from bench_merge import OUR_RUNS, measure_read, row, run_ours  # noqa: E402
from make_family import DEFAULT_DTYPES, SHAPES, FamilyPaths, make_family  # noqa: E402
from processes import child_env, machine_line, run_measured, warm_page_cache  # noqa: E402

FAMILY_RUNS = ("ta", "ta+tadrop", "ties-tensor", "ties+tadrop", "emr", "emr+tadrop")


def stats_command(family: FamilyPaths, output: Path) -> list[str]:
    models = [str(path) for path in family.tasks.values()]
    return [sys.executable, "-m", "tadrop.cli", "stats", str(family.base), *models,
            "-o", str(output), "--overwrite", "--json"]  # fmt: skip


def measure_stats(family: FamilyPaths, work: Path, src: str, read_s: float) -> list[dict]:
    """``tadrop stats`` with an empty cache (a fresh TADROP_HOME), then again (cached)."""
    home = work / "home"
    rows = []
    for label in ("stats (cold cache)", "stats (reopen)"):
        env = child_env(src, TADROP_HOME=str(home))
        measured = run_measured(stats_command(family, work / "stats.parquet"), env=env)
        rows.append(row(label, "tadrop cli", measured, read_s))
        print(rows[-1], flush=True)
    shutil.rmtree(home, ignore_errors=True)
    return rows


def measure_condition(family: FamilyPaths, args: argparse.Namespace) -> list[dict]:
    read = measure_read(family, "cpu", repeats=2, src=args.src)
    read_s = read["read_s"]
    print(f"one read of the inputs {read_s:.2f} s (peak RSS {read['rss'] / 2**20:.0f} MB)")
    rows = [{"run": "read-inputs", "engine": "tadrop.io", "wall_s": round(read["wall_s"], 2),
             "merge_s": round(read_s, 2), "peak_rss_mb": round(read["rss"] / 2**20),
             "x_read": round(read["wall_s"] / read_s, 1)}]  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="family-", dir=args.data))
    try:
        rows += measure_stats(family, work, args.src, read_s)
        wanted = set(args.runs.split(","))
        for run in (run for run in OUR_RUNS if run.label in wanted):
            measured, merge_s = run_ours(run, family, work, args)
            rows.append(row(run.label, "tadrop cli", measured, read_s, merge_s))
            print(rows[-1], flush=True)
            shutil.rmtree(work / run.label, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=("llama-1.1b", "clip-vit-b32", "clip-tiny", "tiny"),
                        default="clip-vit-b32")  # fmt: skip
    parser.add_argument("--data", default="/work/bench_data", help="where families live")
    parser.add_argument("--runs", default=",".join(FAMILY_RUNS), help="merges to time")
    parser.add_argument("--load", default="idle,loaded", help="idle, loaded or both")
    parser.add_argument("--load-kind", choices=("spin", "memory"), default="spin")
    parser.add_argument("--out", default=str(BENCH_DIR / "out"), help="folder for the CSV")
    parser.add_argument("--src", default=str(BENCH_DIR.parent), help="tadrop source to time")
    args = parser.parse_args(argv)
    args.device, args.via = "cpu", "cli"  # what bench_merge.run_ours reads
    args.src = str(Path(args.src).resolve())
    return args


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    shape = SHAPES[args.shape]
    dtype = DEFAULT_DTYPES.get(args.shape, torch.float32)
    family = make_family(Path(args.data) / f"family-{args.shape}", shape, dtype=dtype)
    warmed = warm_page_cache(family.all_dirs)
    print(f"family {args.shape}: {shape.parameters / 1e6:.0f}M parameters x (1 + "
          f"{len(family.tasks)}) models, {dtype}, {warmed / 2**30:.2f} GiB")  # fmt: skip
    tables = []
    for name in parse_conditions(args.load):
        with condition(name, args.load_kind) as description:
            print(f"== {description} ==", flush=True)
            tables.append(pd.DataFrame(measure_condition(family, args)).assign(load=name))
        print(tables[-1].to_string(index=False, na_rep=""), flush=True)
    table = pd.concat(tables, ignore_index=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"family_{args.shape}.csv"
    table.assign(machine=machine_line(), date=time.strftime("%Y-%m-%d")).to_csv(
        csv_path, index=False
    )
    print(table.pivot_table(index="run", columns="load", values=["wall_s", "x_read"]).to_string())
    print(f"wrote {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Whole merges: ``tadrop merge`` against one read of its inputs and against mergekit.

On the generated Llama-shaped family (bench/make_family.py: base + 4 fine-tuned variants,
fp32, sharded safetensors) every merge runs as a fresh process: wall time of the whole command
(start-up, reading, merging, writing the output) and its peak RSS (``wait4``'s ru_maxrss).
Ratios are taken inside this one run, because the machine is shared and noisy:

    x_read        wall time / time to read every input tensor once (page cache warm)
    merge_x_read  the in-process run_merge time (no start-up, no writing) / the same read time
    mk_ties_x     mergekit TIES wall time / this run's wall time (target >= 5 for TIES and EMR)
    rss_vs_mk     this run's peak RSS / mergekit TIES's (target <= 1)

Every configuration is measured twice in one run: idle (nothing started by the benchmark) and
loaded (one busy process per core started by the benchmark itself, ``--load-kind spin`` or
``memory``; bench/background_load.py); the ratios are taken inside each condition and a
summary prints both side by side. The compiled-kernel run (``ties+tadrop``) is repeated with
an empty compiler cache (``(cold cache)`` rows: a fresh machine's first run).

mergekit runs from its own environment (``--mergekit-python`` or $MERGEKIT_PYTHON); without it
those rows are skipped with a note. With ``--device cuda`` (bench/gpu.sh) the read pass also
copies each tensor to the GPU and the GPU's read bandwidth is measured in the same run.

    python3 bench/bench_merge.py [--mergekit-python /work/bench_venv/bin/python] [--load idle,loaded]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO_ROOT)]

import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from background_load import condition, parse_conditions  # noqa: E402
from make_family import SHAPES, FamilyPaths, make_family  # noqa: E402
from merge_children import compare_outputs  # noqa: E402
from processes import (  # noqa: E402
    Measured,
    child_env,
    last_json,
    machine_line,
    run_measured,
    warm_page_cache,
)

CHILDREN = str(BENCH_DIR / "merge_children.py")

TIES_DENSITY = 0.2  # TIES's published trim and mergekit's usual density
TA_SCALING = 0.3


@dataclass(frozen=True)
class MergeRun:
    """One ``tadrop merge`` configuration."""

    label: str
    method: str
    sparsifier: str | None = None
    method_params: dict = field(default_factory=dict)
    sparsifier_params: dict = field(default_factory=dict)


OUR_RUNS = (
    MergeRun("ta", "task_arithmetic", None, {"scaling": TA_SCALING}),
    MergeRun("ta+tadrop", "task_arithmetic", "tadrop", {"scaling": TA_SCALING}),
    MergeRun("ties-global", "ties", "magnitude", {}, {"density": TIES_DENSITY, "scope": "global"}),
    MergeRun("ties-tensor", "ties", "magnitude", {}, {"density": TIES_DENSITY, "scope": "tensor"}),
    MergeRun("ties+tadrop", "ties", "tadrop"),
    MergeRun("emr", "emr"),
    MergeRun("emr+tadrop", "emr", "tadrop"),
)
# mergekit's equivalents of our "ta" and "ties-tensor" (per-tensor magnitude trim, sum election,
# mean of the agreeing entries).
MERGEKIT_RUNS = {
    "mk-ta": ("task_arithmetic", {"weight": TA_SCALING}, {"normalize": False}),
    "mk-ties": (
        "ties",
        {"weight": 1.0, "density": TIES_DENSITY},
        {"normalize": True, "lambda": 1.0},
    ),
}
SAME_OUTPUT = {"ta": "mk-ta", "ties-tensor": "mk-ties"}  # outputs compared with --check
# Runs that use the compiled counting pass: timed again with an empty compiler cache.
COLD_RUNS = ("ties+tadrop",)


# ----- the parent: configs, runs, table -----


def tadrop_config(run: MergeRun, family: FamilyPaths, device: str) -> dict:
    return {
        "name": run.label,
        "base": str(family.base),
        "models": {task: str(path) for task, path in family.tasks.items()},
        "method": run.method,
        "method_params": dict(run.method_params),
        "sparsifier": run.sparsifier or "none",
        "sparsifier_params": dict(run.sparsifier_params),
        "device": device,
    }


def run_ours(
    run: MergeRun,
    family: FamilyPaths,
    work: Path,
    args: argparse.Namespace,
    **extra_env: str,
) -> tuple[Measured, float | None]:
    """Time one of our merges; returns the measurement and run_merge's own seconds."""
    output = work / run.label
    config = tadrop_config(run, family, args.device)
    if args.via == "cli":
        config_path = work / f"{run.label}.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        command = [
            sys.executable,
            "-m",
            "tadrop.cli",
            "merge",
            str(config_path),
            "-o",
            str(output),
            "--overwrite",
            "--json",
        ]
    else:
        spec_path = work / f"{run.label}.json"
        spec = {**config, "sparsifier": run.sparsifier, "output": str(output)}
        spec_path.write_text(json.dumps(spec))
        command = [sys.executable, CHILDREN, "merge", str(spec_path)]
    measured = run_measured(command, env=child_env(args.src, **extra_env))
    report = last_json(measured.stdout)
    outputs = report.get("outputs") or [report]
    seconds = outputs[0].get("seconds") if outputs and isinstance(outputs[0], dict) else None
    return measured, seconds


def mergekit_config(label: str, family: FamilyPaths) -> dict:
    method, model_params, shared_params = MERGEKIT_RUNS[label]
    dtype = str(family.dtype).replace("torch.", "")
    return {
        "merge_method": method,
        "base_model": str(family.base),
        "models": [
            {"model": str(path), "parameters": dict(model_params)} for path in family.tasks.values()
        ],
        "parameters": dict(shared_params),
        "dtype": dtype,
        "out_dtype": dtype,
    }


def run_mergekit(label: str, family: FamilyPaths, work: Path, args: argparse.Namespace) -> Measured:
    config_path = work / f"{label}.yml"
    config_path.write_text(yaml.safe_dump(mergekit_config(label, family), sort_keys=False))
    device = ["--cuda"] if args.device.startswith("cuda") else ["--no-cuda"]
    command = [
        args.mergekit_python, "-m", "mergekit.scripts.run_yaml", str(config_path), str(work / label),
        *device, "--no-copy-tokenizer", "--no-write-model-card", "--quiet", "--lazy-unpickle",
    ]  # fmt: skip
    return run_measured(command, env=dict(os.environ))


def row(
    label: str,
    engine: str,
    measured: Measured | None,
    read_s: float,
    merge_s: float | None = None,
    note: str = "",
) -> dict:
    if measured is None or measured.exit_code != 0:
        problem = (
            "" if measured is None else measured.stderr.strip().splitlines()[-1:] or ["failed"]
        )
        return {
            "run": label,
            "engine": engine,
            "note": note or f"FAILED: {' '.join(problem)[:160]}",
        }
    return {
        "run": label,
        "engine": engine,
        "wall_s": round(measured.wall_s, 2),
        "merge_s": None if merge_s is None else round(merge_s, 2),
        "peak_rss_mb": round(measured.peak_rss_bytes / 2**20),
        "x_read": round(measured.wall_s / read_s, 1),
        "merge_x_read": None if merge_s is None else round(merge_s / read_s, 1),
        "note": note,
    }


def add_mergekit_ratios(table: pd.DataFrame) -> pd.DataFrame:
    reference = table[table["run"] == "mk-ties"]
    if reference.empty or pd.isna(reference["wall_s"].iloc[0]):
        return table
    table["mk_ties_x"] = (reference["wall_s"].iloc[0] / table["wall_s"]).round(2)
    table["rss_vs_mk"] = (table["peak_rss_mb"] / reference["peak_rss_mb"].iloc[0]).round(2)
    return table


def measure_read(family: FamilyPaths, device: str, repeats: int, src: str) -> dict[str, float]:
    """The fastest of ``repeats`` fresh-process reads of every input tensor."""
    folders = [str(folder) for folder in family.all_dirs]
    command = [sys.executable, CHILDREN, "read", device, *folders]
    reports = []
    for _ in range(repeats):
        measured = run_measured(command, env=child_env(src))
        if measured.exit_code != 0:
            raise SystemExit(f"the read pass failed:\n{measured.stderr}")
        reports.append(
            {
                **last_json(measured.stdout),
                "wall_s": measured.wall_s,
                "rss": measured.peak_rss_bytes,
            }
        )
    return min(reports, key=lambda report: report["read_s"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", default="/work/bench_data", help="where the family is generated (reused)"
    )
    parser.add_argument(
        "--shape", choices=sorted(SHAPES), default="100m", help="family size (tiny: a smoke test)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bench/gpu.sh)")
    parser.add_argument(
        "--runs",
        default=",".join(run.label for run in OUR_RUNS),
        help="comma-separated subset of our runs",
    )
    parser.add_argument(
        "--via",
        choices=("cli", "library"),
        default="cli",
        help="time `tadrop merge` or the library calls",
    )
    parser.add_argument(
        "--mergekit-python",
        default=os.environ.get("MERGEKIT_PYTHON", ""),
        help="python of an environment with mergekit",
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip comparing our outputs with mergekit's"
    )
    parser.add_argument("--out", default=str(BENCH_DIR / "out"), help="folder for the CSV")
    parser.add_argument(
        "--src",
        default=str(REPO_ROOT),
        help="folder holding the tadrop package to time (e.g. a patched copy)",
    )
    parser.add_argument("--tag", default="", help="suffix of the CSV name (e.g. patched)")
    parser.add_argument(
        "--load",
        default="idle,loaded",
        help="conditions to measure: idle (nothing started), loaded (one busy process per core)",
    )
    parser.add_argument(
        "--load-kind",
        choices=("spin", "memory"),
        default="spin",
        help="the background load: busy loops (spin) or memory copies (memory)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.src = str(Path(args.src).resolve())
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            "--device cuda: no CUDA device is visible here; run bench/gpu.sh on a GPU machine."
        )
    family = make_family(Path(args.data) / f"family-{args.shape}", SHAPES[args.shape])
    warmed = warm_page_cache(family.all_dirs)
    startup = run_measured(
        [sys.executable, "-c", "import torch, tadrop.cli"], env=child_env(args.src)
    )
    print(f"family: {family.shape.parameters / 1e6:.1f}M parameters x (1 + {len(family.tasks)}) models, "
          f"{family.dtype}, {warmed / 2**30:.2f} GiB on disk; python + torch + tadrop start-up "
          f"{startup.wall_s:.2f} s", flush=True)  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables = []
    for name in parse_conditions(args.load):
        with condition(name, args.load_kind) as description:
            print(f"== {description} ==", flush=True)
            table = add_mergekit_ratios(pd.DataFrame(measure_condition(family, args)))
        tables.append(table.assign(load=name))
        print(table.to_string(index=False, na_rep=""), flush=True)
    table = pd.concat(tables, ignore_index=True)
    suffix = ("" if args.device == "cpu" else "_" + args.device.replace(":", "")) + (
        f"_{args.tag}" if args.tag else ""
    )
    csv_path = out / f"merge{suffix}.csv"
    table.assign(machine=machine_line(), date=time.strftime("%Y-%m-%d")).to_csv(
        csv_path, index=False
    )
    print(summary(table))
    print(f"wrote {csv_path}")
    return 0


def measure_condition(family: FamilyPaths, args: argparse.Namespace) -> list[dict]:
    """Every configured run once, under whatever load is running now; rows of the table."""
    read = measure_read(family, args.device, repeats=3, src=args.src)
    read_s = read["read_s"]
    print(f"one read of the inputs {read_s:.2f} s", flush=True)
    rows = [{"run": "read-inputs", "engine": "tadrop.io", "wall_s": round(read["wall_s"], 2), "merge_s": round(read_s, 2),
             "peak_rss_mb": round(read["rss"] / 2**20), "x_read": round(read["wall_s"] / read_s, 1), "merge_x_read": 1.0}]  # fmt: skip
    gpu_read_s = None
    if args.device.startswith("cuda"):
        command = [sys.executable, CHILDREN, "bandwidth", args.device]
        bandwidth = last_json(run_measured(command, env=child_env(args.src)).stdout)
        gpu_read_s = read["bytes"] / bandwidth["bandwidth_bytes_per_s"]
        print(f"GPU read bandwidth {bandwidth['bandwidth_bytes_per_s'] / 1e9:.0f} GB/s: "
              f"the inputs once on the GPU = {gpu_read_s * 1e3:.1f} ms")  # fmt: skip
    wanted = set(args.runs.split(","))
    work = Path(tempfile.mkdtemp(prefix="merge-", dir=args.data))
    try:
        for run in (run for run in OUR_RUNS if run.label in wanted):
            measured, merge_s = run_ours(run, family, work, args)
            rows.append(row(run.label, f"tadrop {args.via}", measured, read_s, merge_s))
            if gpu_read_s is not None and merge_s is not None:
                rows[-1]["merge_x_gpu_read"] = round(merge_s / gpu_read_s, 1)
            print(rows[-1], flush=True)
            if run.label not in SAME_OUTPUT or args.no_check:
                shutil.rmtree(work / run.label, ignore_errors=True)
        rows += cold_compile_rows(family, work, args, read_s, wanted)
        rows += mergekit_rows(family, work, args, read_s)
        if not args.no_check:
            check_same_outputs(work, family)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def cold_compile_rows(
    family: FamilyPaths, work: Path, args: argparse.Namespace, read_s: float, wanted: set[str]
) -> list[dict]:
    """The compiled-kernel runs again with an empty compiler cache (a fresh machine's first run)."""
    rows = []
    for run in (run for run in OUR_RUNS if run.label in wanted and run.label in COLD_RUNS):
        with tempfile.TemporaryDirectory(prefix="inductor-cold-", dir=args.data) as cache:
            measured, merge_s = run_ours(run, family, work, args, TORCHINDUCTOR_CACHE_DIR=cache)
        rows.append(
            row(f"{run.label} (cold cache)", f"tadrop {args.via}", measured, read_s, merge_s)
        )
        print(rows[-1], flush=True)
        shutil.rmtree(work / run.label, ignore_errors=True)
    return rows


def mergekit_rows(
    family: FamilyPaths, work: Path, args: argparse.Namespace, read_s: float
) -> list[dict]:
    if not args.mergekit_python:
        note = "skipped: pass --mergekit-python or set MERGEKIT_PYTHON"
        return [row(label, "mergekit", None, read_s, note=note) for label in MERGEKIT_RUNS]
    rows = []
    for label in MERGEKIT_RUNS:
        rows.append(row(label, "mergekit", run_mergekit(label, family, work, args), read_s))
        print(rows[-1], flush=True)
    return rows


def check_same_outputs(work: Path, family: FamilyPaths) -> None:
    for ours, theirs in SAME_OUTPUT.items():
        if (work / ours).is_dir() and (work / theirs).is_dir():
            check = compare_outputs(work / ours, work / theirs, family.base)
            print(f"{ours} vs {theirs}: max |diff| {check['max_abs_diff']:.3g} (largest merged delta "
                  f"{check['max_abs_delta']:.3g}); {check['frac_differing']:.2e} of entries differ by > 1e-6")  # fmt: skip


def summary(table: pd.DataFrame) -> str:
    """One line per run: the speed-up over mergekit TIES idle and loaded, side by side."""
    if "mk_ties_x" not in table:
        return "no mergekit rows: speed-ups not computed"
    wide = table.pivot_table(index="run", columns="load", values=["mk_ties_x", "wall_s"])
    return "speed-up over mergekit TIES (wall time), per load:\n" + wide.to_string()


if __name__ == "__main__":
    sys.exit(main())

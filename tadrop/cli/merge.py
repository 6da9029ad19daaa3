"""``tadrop merge CONFIG``: open the family a config names, merge (each sweep point), write.

``--dry-run`` opens only the checkpoint headers and prints what would be done: tensors,
parameters, method, sparsifier and a memory estimate, and refuses what the real run refuses.
The estimate follows ``merge_to_folder``: Python, torch and tadrop themselves (this process's
own peak RSS, measured when the plan is made); the walk, which holds one tensor name at a time
(base, K task vectors, the merged tensor, and with a sparsifier K sparsified copies and K masks);
merged tensors stream to the planned writer, which holds the tensor being written; EMR walks
twice and writes each tensor of its K task models as it goes (``method.disk_bytes``: its task
models and/or its compact artifact on disk).
For a demo config whose zoo is not built yet, it says the zoo will be built first.
"""

from __future__ import annotations

import math
import re
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tadrop.cli.output import Console, UsageError, checking_inputs, human_bytes
from tadrop.config import RunConfig
from tadrop.io.writer import check_not_over_inputs

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
SPARSIFYING_METHODS = ("ties", "emr")  # masked copies even without a sparsifier


def torch_dtype(name: str) -> torch.dtype | None:
    return None if name == "auto" else getattr(torch, name)


def open_family(config: RunConfig, console: Console, *, build_demo: bool = True):
    """The ModelFamily of a config: the demo zoo (built if absent) or the user's checkpoints."""
    from tadrop.task_vectors import load_family

    if config.demo is not None:
        from tadrop.cli.demo import demo_family_paths

        base, models = demo_family_paths(config.demo, console, build=build_demo)
    else:
        base, models = config.base, dict(config.models or {})
    return load_family(
        base,
        models,
        include=config.include,
        exclude=config.exclude,
        keys=config.keys,
        align_prefixes=config.align_prefixes,
    )


@dataclass
class MemoryEstimate:
    baseline_bytes: int  # Python, torch and tadrop imported
    working_bytes: int  # one tensor name's walk
    held_bytes: int  # a merge result in memory: none, every merge is written as it goes
    write_bytes: int  # the tensor being written (EMR: one per task), in the output dtype
    disk_bytes: int  # what the output folder(s) will take

    @property
    def peak_bytes(self) -> int:
        return self.baseline_bytes + self.working_bytes + self.held_bytes + self.write_bytes


def process_peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes: Linux's VmHWM, else ru_maxrss
    (which a child inherits from its parent at fork, so it overstates a small child's peak)."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024
    except (OSError, AttributeError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def estimate_memory(family, method, out_dtype: str, *, sparsified: bool = True) -> MemoryEstimate:
    """Peak RAM of ``merge_to_folder`` for the built ``method``; ``sparsified``: K masked copies
    and K masks are held (a sparsifier, TIES' trim or EMR's masks); without one the task vectors
    are used as read."""
    tasks = len(family.task_names)
    largest = max(family.numel(name) for name in family.tensor_names)
    merged = family.total_params
    unmerged = sum(
        family.base.nbytes(name)
        for name in family.base.keys()
        if name not in set(family.tensor_names)
    )
    base_bytes = sum(family.base.nbytes(name) for name in family.tensor_names)
    out_bytes = base_bytes if out_dtype == "auto" else merged * DTYPE_BYTES[out_dtype]
    copies = 2 * tasks if sparsified else tasks  # float32 stacks of shape (K, *largest)
    working = 4 * largest * (copies + 3) + (tasks * largest if sparsified else 0)
    # the writer holds the tensor being written (planned shards); EMR, walking twice, one per task
    written = largest_output_bytes(family, out_dtype) * (1 if method.streams else tasks)
    disk = out_bytes + unmerged
    if not method.streams:  # EMR: its task models and/or its compact artifact
        disk = method.disk_bytes(disk, merged, tasks)
    return MemoryEstimate(process_peak_rss(), working, 0, written, disk)


def largest_output_bytes(family, out_dtype: str) -> int:
    """Bytes of the largest tensor as written (floats in ``out_dtype`` unless "auto")."""

    def width(name: str) -> int:
        stored = family.base.dtype(name)
        return (
            DTYPE_BYTES[out_dtype]
            if out_dtype != "auto" and stored.is_floating_point
            else stored.itemsize
        )

    return max(width(name) * math.prod(family.base.shape(name)) for name in family.base.keys())


def output_dir(config: RunConfig, override: str | None) -> Path:
    if override:
        return Path(override).expanduser().absolute()
    if config.output.path is None:
        raise UsageError("No output folder: set output.path in the config or pass -o OUT.")
    return config.output.path


def config_inputs(config: RunConfig) -> list[Path]:
    """Every file a config reads: the config itself, the checkpoints, the evaluation data.
    An output (even with --overwrite) may not replace, contain or sit inside any of them."""
    inputs = [config.source, config.base, *(config.models or {}).values()]
    inputs += list((config.eval.data or {}).values()) if config.eval else []
    return [path for path in inputs if path is not None]


def point_dir(out: Path, label: str) -> Path:
    """Folder of one sweep point: ``a=0.45,b=0.8`` -> ``OUT/a=0.45_b=0.8``."""
    return out / re.sub(r"[^A-Za-z0-9=._-]+", "_", label.replace(",", "_")) if label else out


def _config_plan(config: RunConfig, out: Path | None) -> dict[str, Any]:
    """What the config alone says: method, sparsifier, sweep, output."""
    method, sparsifier = config.merge_spec()
    return {
        "config": str(config.source) if config.source else None,
        "method": method,
        "method_params": config.method_params,
        "sparsifier": sparsifier or ("magnitude (TIES default)" if method == "ties" else None),
        "sparsifier_params": config.sparsifier_params,
        "sweep_size": config.sweep.size if config.sweep else 1,
        "sweep_points": [label for label, _, _ in config.grid() if label],
        "output": str(out) if out else None,
        "output_dtype": config.output.dtype,
    }


def plan_before_zoo_build(config: RunConfig, out: Path | None, build: dict) -> dict[str, Any]:
    """The dry run of a demo config whose zoo is not built: the run builds it first."""
    return {**_config_plan(config, out), "tasks": build["tasks"], "zoo_build": build}


def plan(config: RunConfig, family, out: Path | None) -> dict[str, Any]:
    report = _config_plan(config, out)
    _, method_params, sparsifier_params = config.grid()[0]
    built, _ = config.build(method_params, sparsifier_params)
    memory = estimate_memory(
        family,
        built,
        config.output.dtype,
        sparsified=config.merge_spec()[1] is not None or report["method"] in SPARSIFYING_METHODS,
    )
    summary = family.summary()
    return {
        **report,
        "tasks": summary["tasks"],
        "tensors": summary["tensors"],
        "parameters": summary["parameters"],
        "dtypes": summary["dtypes"],
        "skipped": summary["skipped"],
        "notes": summary["notes"],
        "memory": {
            "peak_ram_bytes": memory.peak_bytes,
            "baseline_bytes": memory.baseline_bytes,
            "walk_bytes": memory.working_bytes,
            "result_bytes": memory.held_bytes,
            "write_bytes": memory.write_bytes,
            "disk_bytes_per_point": memory.disk_bytes,
        },
    }


def plan_text(report: dict[str, Any]) -> str:
    lines = [
        f"method:      {report['method']} {report['method_params'] or ''}".rstrip(),
        f"sparsifier:  {report['sparsifier'] or 'none'} {report['sparsifier_params'] or ''}".rstrip(),
        f"tasks:       {', '.join(report['tasks'])}",
    ]
    if "zoo_build" in report:
        from tadrop.cli.demo import zoo_build_text

        lines.append(f"zoo:         {zoo_build_text(report['zoo_build'])}")
    else:
        lines += _family_lines(report)
    if report["sweep_points"]:
        lines.append(
            f"sweep:       {report['sweep_size']} points: {'; '.join(report['sweep_points'])}"
        )
    lines.append(f"output:      {report['output'] or '(none)'} (dtype {report['output_dtype']})")
    if "memory" in report:
        lines.append(f"memory:      {memory_text(report['memory'])}")
    return "\n".join(lines)


def _family_lines(report: dict[str, Any]) -> list[str]:
    skipped = report["skipped"]
    lines = [
        f"tensors:     {report['tensors']} merged ({report['parameters']:,} parameters, {', '.join(report['dtypes'])}); {len(skipped)} kept from the base",
    ]
    lines += [f"  skipped {name}: {reason}" for name, reason in list(skipped.items())[:10]]
    if len(skipped) > 10:
        lines.append(f"  ... and {len(skipped) - 10} more")
    return lines + [f"note:        {note}" for note in report["notes"]]


def memory_text(memory: dict[str, int]) -> str:
    """The dry run's memory line: the peak and what makes it up (no empty parts)."""
    parts = [
        f"Python and torch {human_bytes(memory['baseline_bytes'])}",
        f"one tensor's walk {human_bytes(memory['walk_bytes'])}",
    ]
    if memory["result_bytes"]:
        parts.append(f"merged model held {human_bytes(memory['result_bytes'])}")
    parts.append(f"writing {human_bytes(memory['write_bytes'])}")
    return (
        f"~{human_bytes(memory['peak_ram_bytes'])} peak RAM ({', '.join(parts)}); "
        f"~{human_bytes(memory['disk_bytes_per_point'])} on disk per merge"
    )


def merge_points(config: RunConfig, family, console: Console, *, device: str):
    """Yield (label, MergeResult, seconds) for each sweep point (one without a sweep)."""
    from tadrop.experiments import grid_points, run_points

    method, sparsifier = config.merge_spec()
    for point in grid_points(
        method, sparsifier, config.method_params, config.sparsifier_params, config.sweep
    ):
        with console.progress(f"merge {point.label}".strip()) as bar:
            (run,) = run_points(  # one point per bar; the bar counts per mille of the merge
                family,
                [point],
                device=device,
                progress=lambda done, total, text, bar=bar: bar(round(1000 * done), 1000, text),
            )
        yield point.label, run.result, run.merge_seconds


def command_merge(args, console: Console) -> dict[str, Any]:
    from tadrop.config import load_config

    with checking_inputs():
        config = load_config(args.config)
        if config.template:
            raise UsageError(
                f"{args.config} is a template: replace its placeholder paths and remove `template: true`."
            )
        out = (
            None
            if args.dry_run and not (args.output or config.output.path)
            else output_dir(config, args.output)
        )
        overwrite = args.overwrite or config.output.overwrite
        _check_output(config, out, overwrite)
        if args.dry_run and config.demo is not None:
            from tadrop.cli.demo import zoo_build_plan

            build = zoo_build_plan(config.demo)
            if build is not None:  # the real run builds the zoo first
                report = plan_before_zoo_build(config, out, build)
                console.result({"dry_run": True, **report}, plan_text(report))
                return report
        family = open_family(config, console, build_demo=not args.dry_run)
        if out is not None:
            check_not_over_inputs(out, [family.base, *family.tasks.values()])
    report = plan(config, family, out)
    if args.dry_run:
        console.result({"dry_run": True, **report}, plan_text(report))
        return report
    console.info(plan_text(report))
    written = [
        _merge_point(config, family, point, out, args, console, overwrite)
        for point in config.grid()
    ]
    text = "\n".join(f"{item['path']}  sparsity {_mean(item['sparsity']):.3f}" for item in written)
    console.result({"outputs": written, "plan": report}, text)
    return {"outputs": written}


def _check_output(config: RunConfig, out: Path | None, overwrite: bool) -> None:
    """The refusals of the real run, also made by a dry run (exit 2)."""
    if out is None:
        return
    check_not_over_inputs(out, config_inputs(config))
    if out.exists() and not overwrite:
        raise UsageError(
            f"{out} already exists; pass --overwrite (or output.overwrite: true) to replace it."
        )


def _merge_point(config, family, point, out: Path, args, console: Console, overwrite: bool):
    """Merge one sweep point (the whole run without a sweep) into its folder; what was written."""
    from tadrop.merge.folder import merge_to_folder

    label, method_params, sparsifier_params = point
    target = point_dir(out, label)
    if target != out and target.exists() and not overwrite:
        raise UsageError(f"{target} already exists; pass --overwrite to replace it.")
    method, sparsifier = config.build(method_params, sparsifier_params)
    started = time.perf_counter()
    with console.progress(f"merge {label}".strip()) as progress:
        path, result = merge_to_folder(
            family,
            method,
            sparsifier,
            target,
            device=args.device or config.device,
            progress=progress,
            overwrite=overwrite,
            max_shard_bytes=config.output.max_shard_size,
            dtype=torch_dtype(config.output.dtype),
        )
    seconds = time.perf_counter() - started
    sparsity = result.sparsity()
    item = {"point": label, "path": str(path), "seconds": round(seconds, 3), "sparsity": sparsity}
    console.info(f"wrote {path} in {seconds:.1f} s (sparsity {_mean(sparsity):.3f})")
    artifact = getattr(result, "artifact", None)  # EMR's compact artifact, when written
    if artifact:
        item["compact_size_ratio"] = artifact["size_ratio"]
        console.info(
            f"compact artifact: {artifact['size_ratio']:.3f} x the size of "
            f"{len(artifact['tasks'])} full task models"
        )
    return item


def _mean(values: dict[str, float]) -> float:
    return sum(values.values()) / max(len(values), 1)

"""``tadrop stats``: the per-tensor statistics table of a family, saved as parquet or CSV."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tadrop.cli.output import Console, UsageError, checking_inputs, format_table


def command_stats(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    from tadrop.stats import compute_stats, overall_sparsity, save_stats
    from tadrop.task_vectors import load_family

    output = Path(args.output).expanduser()
    with checking_inputs():
        if output.suffix not in (".parquet", ".csv"):
            raise UsageError(f"-o {output}: use a .parquet or .csv file name.")
        if output.exists() and not args.overwrite:
            raise UsageError(f"{output} already exists; pass --overwrite to replace it.")
        for path in [args.base, *args.finetuned]:
            if not Path(path).expanduser().exists():
                raise UsageError(f"{path}: no such file or folder.")
        family = load_family(
            args.base,
            list(args.finetuned),
            include=args.include,
            exclude=args.exclude,
            keys=args.keys,
            align_prefixes=args.align_prefixes,
        )
        from tadrop.sparsify import check_quantiles

        check_quantiles(args.a, args.b, args.eps)
    with console.progress("stats") as progress:
        table = compute_stats(
            family, a=args.a, b=args.b, eps=args.eps, device=args.device, progress=progress
        )
    save_stats(table, output)
    sparsity = overall_sparsity(table, table["drop_rate"]).to_dict()
    rows = [{"task": task, "overall_drop_rate": rate} for task, rate in sparsity.items()]
    text = f"wrote {output} ({len(table)} rows)\n" + format_table(
        rows, ["task", "overall_drop_rate"]
    )
    console.result({"output": str(output), "rows": len(table), "overall_drop_rate": sparsity}, text)
    return {"output": str(output)}

"""The reproduction report: re-make the TADrop paper's tables and figures on the demo zoos.

``write_report(out_dir, zoos=("text", "image"), size="quick")`` runs the experiments of
``tadrop.report.experiments`` on each zoo, draws the figures (``tadrop.figures``, exported as
SVG by kaleido), and writes ``README.md`` with the
measured numbers, the paper's claims checked against them, the machine and the timings, plus
``results.json`` with every number. The folder is written atomically.
"""

from __future__ import annotations

import json
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tadrop.figures import (
    drop_rate_by_component,
    drop_rate_by_layer,
    drop_rate_heatmap,
    figures_to_svg,
)
from tadrop.figures import sparsity_sweep as sweep_figure
from tadrop.report.document import render_report
from tadrop.report.experiments import (
    SETTINGS,
    Bench,
    Row,
    ablation_table,
    main_table,
    quantile_grid,
    sparsity_sweep,
)
from tadrop.report.landscape import component_table, landscape_summary
from tadrop.report.results import ZooReport

SEED = 0


def fix_seeds(seed: int = SEED) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def run_zoo(bench: Bench, size: str, device: str, log: Callable[[str], None]) -> ZooReport:
    """Every experiment of the report on one zoo."""
    from dataclasses import replace

    from tadrop.stats import compute_stats

    settings = replace(SETTINGS[size], device=device)
    seconds: dict[str, float] = {}

    def timed(name: str, function: Callable[[], Any]) -> Any:
        log(f"[{bench.zoo}] {name}...")
        fix_seeds()
        started = time.perf_counter()
        value = function()
        seconds[name] = time.perf_counter() - started
        return value

    main_rows, selections = timed("tables 1/2", lambda: main_table(bench, settings))
    ablation = timed("table 4", lambda: ablation_table(bench, settings))
    grid = timed("table 7", lambda: quantile_grid(bench, settings))
    sweep = timed("figure 1", lambda: sparsity_sweep(bench, settings))
    stats = timed("figures 5-7", lambda: compute_stats(bench.family, device=device))
    report = ZooReport(
        bench.zoo,
        size,
        bench.description,
        main_rows,
        selections,
        ablation,
        grid,
        sweep,
        landscape_summary(stats),
        component_table(stats).reset_index(),
        seconds=seconds,
    )
    title = f"{bench.zoo} zoo ({size})"
    report.figures = {
        f"fig1_sparsity_{bench.zoo}.svg": sweep_figure(
            sweep_table(sweep),
            score_label="average accuracy (%)",
            title=f"Fig. 1 - EMR accuracy vs sparsity, {title}",
        ),
        f"fig5_landscape_{bench.zoo}.svg": drop_rate_heatmap(
            stats, f"Fig. 5 - TADrop drop rate per task x tensor, {title}"
        ),
        f"fig6_layers_{bench.zoo}.svg": drop_rate_by_layer(
            stats, f"Fig. 6 - drop rate per layer, {title}"
        ),
        f"fig7_components_{bench.zoo}.svg": drop_rate_by_component(
            stats, f"Fig. 7 - drop rate per component, {title}"
        ),
    }
    return report


def sweep_table(sweep: dict[str, list[Row]]) -> pd.DataFrame:
    """Fig. 1's points: one line per sweep (``sparsifier``), accuracy in percent."""
    return pd.DataFrame(
        [
            {"sparsifier": name, "sparsity": row.sparsity, "score": 100 * row.average}
            for name, rows in sweep.items()
            for row in rows
        ],
        columns=["sparsifier", "sparsity", "score"],
    )


def _rows_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [{**asdict(row), "average": row.average} for row in rows]


def results_json(reports: list[ZooReport], run: dict[str, Any]) -> str:
    payload = {
        "run": run,
        "zoos": {
            report.zoo: {
                "description": report.description,
                "main": _rows_json(report.main_rows),
                "lambda_selection_validation": {
                    k: {str(s): v for s, v in scores.items()}
                    for k, scores in report.selections.items()
                },
                "ablation": _rows_json(report.ablation),
                "quantile_grid": _rows_json(report.grid),
                "sparsity_sweep": {name: _rows_json(rows) for name, rows in report.sweep.items()},
                "landscape": report.landscape.to_dict(orient="records"),
                "seconds": report.seconds,
            }
            for report in reports
        },
    }
    return json.dumps(payload, indent=1, default=str)


def write_report(
    out_dir: str | Path,
    *,
    zoos: tuple[str, ...] = ("text", "image"),
    size: str = "quick",
    device: str = "auto",
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    benches: dict[str, Bench] | None = None,
) -> Path:
    """Run the report's experiments on each zoo and write the report folder atomically.

    ``benches`` lets a caller pass zoos it already opened (tests share one); otherwise each
    zoo is opened (and built if absent) with ``report_bench.open_bench``.
    """
    from tadrop.task_vectors import resolve_device

    if size not in SETTINGS:
        raise ValueError(f"size={size!r} is not known; use one of {sorted(SETTINGS)}.")
    device = str(resolve_device(device))
    started = time.perf_counter()
    reports = []
    for zoo in zoos:
        bench = (benches or {}).get(zoo)
        if bench is None:
            from tadrop.report.bench import open_bench

            bench = open_bench(zoo, size, SETTINGS[size], log=log)
        reports.append(run_zoo(bench, size, device, log))
    run = {
        "size": size,
        "scalings": SETTINGS[size].scalings,
        "device": device,
        "seed": SEED,
        "seconds": time.perf_counter() - started,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
    }
    files = figures_to_svg(
        {name: fig for report in reports for name, fig in report.figures.items()}
    )
    files["README.md"] = render_report(reports, run)
    files["results.json"] = results_json(reports, run)
    return write_folder(Path(out_dir), files, overwrite=overwrite)


def write_folder(out_dir: Path, files: dict[str, str], *, overwrite: bool) -> Path:
    """Write text files into a staging folder renamed into place (``tadrop.io.atomic_dir``)."""
    from tadrop.io.atomic import atomic_dir

    out_dir = out_dir.expanduser().absolute()
    empty = out_dir.is_dir() and not any(out_dir.iterdir())
    if out_dir.exists() and not (overwrite or empty):
        raise ValueError(
            f"{out_dir} already exists; pass overwrite=True (command line: --overwrite)."
        )
    with atomic_dir(out_dir, overwrite=overwrite or empty) as staging:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
    return out_dir / "README.md"

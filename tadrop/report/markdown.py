"""The reproduction report's Markdown: tables of measured numbers and the comparison with the
paper's claims, each verdict computed from the numbers (nothing here is typed in by hand)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from tadrop.report.experiments import Row

if TYPE_CHECKING:
    from tadrop.report.results import ZooReport

# The paper's claims (arXiv 2508.06163) that the demo can test, as sentences.
PAPER_CLAIMS = {
    "every_method": "TADrop improves every merging method it is plugged into (Tables 1-2).",
    "emr_gain": "EMR + TADrop gains +2.0 points of average accuracy over EMR on 8 ViT-B/32 tasks.",
    "adaptive_vs_uniform": "At the same sparsity, per-tensor adaptive rates beat one uniform rate (Fig. 1).",
    "full_best": "Full TADrop (L2 rescale) beats the ablations: global rate, no rescale, 1/(1-d) (Table 4).",
    "default_ok": "The default (a, b) = (0.5, 0.95) is at or near the best of the grid (Table 7).",
}


def pct(value: float) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{100 * value:.2f}"
    )


def signed(value: float) -> str:
    return f"{100 * value:+.2f}"


def accuracy_table(rows: list[Row], individual: Row | None) -> str:
    """Per-task accuracy (%), average, normalized average, sparsity and timings."""
    tasks = list(rows[0].accuracy)
    header = ["Method", *tasks, "Avg", "Norm. avg", "Sparsity", "Merge s", "Eval s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        normalized = normalized_average(row, individual) if individual else float("nan")
        cells = [
            row.name,
            *(pct(row.accuracy[task]) for task in tasks),
            f"**{pct(row.average)}**",
            pct(normalized),
            "–" if row.sparsity is None else f"{row.sparsity:.3f}",
            f"{row.merge_seconds:.1f}",
            f"{row.eval_seconds:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def normalized_average(row: Row, individual: Row) -> float:
    """mean_k acc_merged(k) / acc_individual(k)."""
    ratios = [
        row.accuracy[task] / individual.accuracy[task]
        for task in row.accuracy
        if individual.accuracy.get(task)
    ]
    return sum(ratios) / len(ratios) if ratios else float("nan")


def normalized_table(rows: list[Row], individual: Row) -> str:
    tasks = list(individual.accuracy)
    lines = ["| Method | " + " | ".join(tasks) + " | Avg |", "|" + "---|" * (len(tasks) + 2)]
    for row in rows:
        values = [row.accuracy[task] / individual.accuracy[task] for task in tasks]
        lines.append(
            f"| {row.name} | "
            + " | ".join(pct(v) for v in values)
            + f" | **{pct(sum(values) / len(values))}** |"
        )
    return "\n".join(lines)


def selection_table(selections: dict[str, dict[float, float]]) -> str:
    scalings = sorted({scaling for scores in selections.values() for scaling in scores})
    lines = [
        "| Method | " + " | ".join(f"λ={s:g}" for s in scalings) + " |",
        "|" + "---|" * (len(scalings) + 1),
    ]
    for label, scores in selections.items():
        best = max(scores.values())
        cells = [
            (f"**{pct(scores[s])}**" if scores[s] == best else pct(scores[s]))
            if s in scores
            else ""
            for s in scalings
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def grid_table(rows: list[Row]) -> str:
    """Table 7 layout: rows a, columns b, cells average accuracy (sparsity)."""
    parsed = []
    for row in rows:
        a_text, b_text = (part.split("=")[1] for part in row.name.split(", "))
        parsed.append((float(a_text), float(b_text), row))
    b_values = sorted({b for _, b, _ in parsed})
    a_values = sorted({a for a, _, _ in parsed})
    lines = [
        "| a \\ b | " + " | ".join(f"{b:g}" for b in b_values) + " |",
        "|" + "---|" * (len(b_values) + 1),
    ]
    for a in a_values:
        cells = [
            next(
                f"{pct(r.average)} ({r.sparsity:.2f})"
                for a2, b2, r in parsed
                if a2 == a and b2 == b
            )
            for b in b_values
        ]
        lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def frame_table(frame: pd.DataFrame, floats: str = "{:.3f}") -> str:
    columns = list(frame.columns)
    lines = ["| " + " | ".join(str(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for _, record in frame.iterrows():
        lines.append(
            "| "
            + " | ".join(floats.format(v) if isinstance(v, float) else str(v) for v in record)
            + " |"
        )
    return "\n".join(lines)


def _row(rows: list[Row], prefix: str) -> Row:
    return next(row for row in rows if row.name.startswith(prefix))


Check = tuple[str, str, str]  # (claim, measured, verdict)


def _verdict(wins: int, total: int) -> str:
    return "agrees" if wins == total else "partly" if wins else "disagrees"


def _tadrop_gain_checks(rows: list[Row]) -> list[Check]:
    """Every method improves with TADrop; EMR's gain in particular."""
    pairs = [
        ("Task Arithmetic (", "Task Arithmetic + TADrop"),
        ("TIES (", "TIES + TADrop"),
        ("EMR", "EMR + TADrop"),
    ]
    gains = {
        plain.rstrip(" ("): _row(rows, with_tadrop).average - _row(rows, plain).average
        for plain, with_tadrop in pairs
    }
    measured = ", ".join(f"{name}: {signed(gain)}" for name, gain in gains.items())
    improved = sum(gain > 0 for gain in gains.values())
    emr_gain = gains["EMR"]
    return [
        (
            PAPER_CLAIMS["every_method"],
            measured,
            f"{'agrees' if improved == len(gains) else 'disagrees'} ({improved}/{len(gains)} methods improve)",
        ),
        (
            PAPER_CLAIMS["emr_gain"],
            f"EMR + TADrop vs EMR: {signed(emr_gain)} points",
            "agrees in sign" if emr_gain > 0 else "disagrees",
        ),
    ]


def _adaptive_check(report: ZooReport) -> Check:
    adaptive, uniform = report.sweep.values()
    wins = sum(a.average > u.average for a, u in zip(adaptive, uniform, strict=True))
    diffs = ", ".join(
        f"s={a.sparsity:.2f}: {signed(a.average - u.average)}"
        for a, u in zip(adaptive, uniform, strict=True)
    )
    verdict = f"{_verdict(wins, len(adaptive))} ({wins}/{len(adaptive)} sparsity levels)"
    return PAPER_CLAIMS["adaptive_vs_uniform"], diffs, verdict


def _ablation_check(report: ZooReport) -> Check:
    full = _row(report.ablation, "Full TADrop (L2 rescale), pre")
    others = [row for row in report.ablation if row.name.endswith(", pre") and row is not full]
    beaten = sum(full.average > row.average for row in others)
    measured = (
        ", ".join(f"{row.name.removesuffix(', pre')}: {pct(row.average)}" for row in others)
        + f"; full: {pct(full.average)}"
    )
    verdict = f"{_verdict(beaten, len(others))} (beats {beaten}/{len(others)})"
    return PAPER_CLAIMS["full_best"], measured, verdict


def _default_checks(report: ZooReport) -> list[Check]:
    best = max(report.grid, key=lambda row: row.average)
    default = next((row for row in report.grid if row.name == "a=0.5, b=0.95"), None)
    if default is None:
        return []
    gap = best.average - default.average
    verdict = "agrees" if gap <= 0.005 else f"disagrees (best is {best.name})"
    measured = (
        f"default {pct(default.average)}, best {best.name} {pct(best.average)} (gap {signed(gap)})"
    )
    return [(PAPER_CLAIMS["default_ok"], measured, verdict)]


def claim_checks(report: ZooReport) -> list[Check]:
    """(claim, measured, verdict) for each claim of ``PAPER_CLAIMS``."""
    return [
        *_tadrop_gain_checks(report.main_rows),
        _adaptive_check(report),
        _ablation_check(report),
        *_default_checks(report),
    ]


def claims_table(report: ZooReport) -> str:
    lines = ["| Paper's claim | Measured on this zoo | Verdict |", "|---|---|---|"]
    lines += [
        f"| {claim} | {measured} | {verdict} |" for claim, measured, verdict in claim_checks(report)
    ]
    return "\n".join(lines)

"""The reproduction report's README.md, assembled from the measured results."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tadrop.report.markdown import (
    accuracy_table,
    claim_checks,
    claims_table,
    frame_table,
    grid_table,
    normalized_average,
    normalized_table,
    pct,
    selection_table,
    signed,
)

if TYPE_CHECKING:
    from tadrop.report.results import ZooReport

ZOO_TITLES = {"text": "Text zoo (Transformer encoder)", "image": "Image zoo (CNN)"}


def _description(report: ZooReport) -> str:
    lines = [f"- **{key}**: {value}" for key, value in report.description.items()]
    return "\n".join(lines)


def _headline(report: ZooReport) -> str:
    rows = {row.name.split(" (lambda")[0]: row for row in report.main_rows}
    individual = rows["Individual fine-tuned"]
    parts = []
    for plain, with_tadrop in (
        ("Task Arithmetic", "Task Arithmetic + TADrop"),
        ("TIES", "TIES + TADrop"),
        ("EMR", "EMR + TADrop"),
    ):
        gain = rows[with_tadrop].average - rows[plain].average
        parts.append(
            f"{plain} {pct(rows[plain].average)} → {pct(rows[with_tadrop].average)} ({signed(gain)})"
        )
    return (
        f"**{ZOO_TITLES.get(report.zoo, report.zoo)}**: average accuracy with TADrop: "
        + "; ".join(parts)
        + f". Individual models: {pct(individual.average)}; base: {pct(rows['Base (pre-trained, linear-probe heads)'].average)}; "
        + f"EMR + TADrop normalized: {pct(normalized_average(rows['EMR + TADrop'], individual))}."
    )


def zoo_section(report: ZooReport) -> str:
    zoo = report.zoo
    individual = next(row for row in report.main_rows if row.name == "Individual fine-tuned")
    merged = [row for row in report.main_rows if row.name not in ("Individual fine-tuned",)]
    adaptive, uniform = report.sweep.values()
    sweep_lines = ["| Sparsity | TADrop (a) | Uniform rate | Difference |", "|---|---|---|---|"]
    for a_row, u_row in zip(adaptive, uniform, strict=True):
        sweep_lines.append(
            f"| {a_row.sparsity:.3f} / {u_row.sparsity:.3f} | {pct(a_row.average)} ({a_row.name}) | {pct(u_row.average)} | {signed(a_row.average - u_row.average)} |"
        )
    parts = [
        f"## {ZOO_TITLES.get(zoo, zoo)}",
        _description(report),
        "### Tables 1/2 - accuracy per task (%)",
        "Base = the pre-trained backbone with each task's linear-probe head; individual = each "
        "fine-tuned model on its own task. Merged models use the fine-tuned task heads. "
        "Sparsity = mean fraction of task-vector entries the sparsifier dropped (TIES without "
        "TADrop: its default top-20% trim).",
        accuracy_table(report.main_rows, individual),
        "### Normalized accuracy (merged / individual, %)",
        normalized_table(merged, individual),
        "### How lambda was chosen (average validation accuracy, %)",
        selection_table(report.selections),
        "### Table 4 - ablations on EMR (%)",
        "`mask`: the TADrop keep-mask is ANDed with EMR's task masks (the composition used in "
        "Tables 1/2); there EMR's own rescalers set the magnitudes, so the sparsifier's rescale "
        "has no effect by construction and only the global-vs-per-tensor rows differ. `pre`: EMR "
        "runs on the sparsified, rescaled task vectors, where the rescale variants matter.",
        accuracy_table(report.ablation, individual),
        "### Table 7 - (a, b) grid, EMR + TADrop: average accuracy % (sparsity)",
        grid_table(report.grid),
        f'### Fig. 1 - accuracy vs sparsity (EMR, `sparsify="pre"`)\n\n![Fig. 1](fig1_sparsity_{zoo}.svg)',
        "\n".join(sweep_lines),
        "### Figs. 5-7 - the sparsity landscape",
        f"![Fig. 5](fig5_landscape_{zoo}.svg)\n\n![Fig. 6](fig6_layers_{zoo}.svg)\n\n![Fig. 7](fig7_components_{zoo}.svg)",
        "TADrop's drop rate per task over tensors (numel-weighted overall rate and spread):",
        frame_table(report.landscape),
        "Mean drop rate per component kind:",
        frame_table(report.components),
        "### The paper's claims on this zoo",
        claims_table(report),
        "### Time (s)",
        " · ".join(f"{name}: {seconds:.1f}" for name, seconds in report.seconds.items()),
    ]
    return "\n\n".join(parts)


def _cnn_answer(reports: list[ZooReport]) -> str:
    image = next((report for report in reports if report.zoo == "image"), None)
    if image is None:
        return "The image (CNN) zoo was not part of this run."
    lines = [
        "The paper evaluates Transformers (ViT, BEiT) only and leaves CNNs open. Each of its "
        "claims, measured on the CNN zoo (EfficientNet-Lite0):",
        "",
    ]
    lines += [
        f"- {claim} Measured: {measured}. **{verdict}**"
        for claim, measured, verdict in claim_checks(image)
    ]
    return "\n".join(lines)


def render_report(reports: list[ZooReport], run: dict[str, Any]) -> str:
    machine = run["machine"]
    header = [
        "# TADrop reproduction on the demo zoos",
        f"Generated by `tadrop report --size {run['size']}` on {run['date']} in {run['seconds'] / 60:.1f} min "
        f"(device {run['device']}; {machine['processor']}, {machine['cpu_threads']} threads; torch "
        f"{machine['torch']}, Python {machine['python']}; {machine['platform']}). Every number "
        "below was measured in that run; `results.json` holds them all.",
        "## Headline",
        "\n\n".join(_headline(report) for report in reports),
        "## Method",
        "- Paper: *One Size Does Not Fit All: A Distribution-Aware Sparsification for More Precise "
        "Model Merging* (arXiv 2508.06163). TADrop drops, per tensor, the fraction "
        "d = Q_a(|τ|) / (Q_b(|τ|) + ε) of entries with the smallest |τ| (a = 0.5, b = 0.95) and "
        "rescales the kept ones to the tensor's original L2 norm.\n"
        "- Merges are made by `tadrop.merge.run_merge` with the methods' published defaults "
        "(TIES: elect by mass, disjoint mean, top-20% global trim when TADrop is off; EMR as in "
        "its official code; TADrop composed with each method as in the paper, see "
        "docs/methods.md).\n"
        "- **Data splits**: each task's held-out set (never used for fine-tuning or probing) is "
        "split in two halves with a fixed seed: *validation* (hyper-parameters) and *test* "
        "(every number in the tables, base and individual models included).\n"
        "- **Lambda** (Task Arithmetic, TIES, with and without TADrop) is chosen the same way for "
        f"every method: the value of {{{', '.join(f'{s:g}' for s in run['scalings'])}}} with the "
        "best average validation accuracy (ties: the smaller); test accuracy is measured once at "
        "that value. Averaging and EMR have no lambda. TADrop keeps its defaults "
        "(a, b) = (0.5, 0.95) everywhere but Table 7 and Fig. 1.\n"
        f"- Seeds fixed ({run['seed']}) before every experiment (no random sparsifier is used).\n"
        "- The demo zoos are small (a sentence encoder and a small CNN fine-tuned on a few "
        "packaged data sets on a CPU), not the paper's ViT-B/32 on 8 vision tasks: the "
        "comparison is of directions and orders of magnitude, not of exact numbers.",
        "## Answer for CNNs (the paper's open question)",
        _cnn_answer(reports),
    ]
    return "\n\n".join(header + [zoo_section(report) for report in reports]) + "\n"

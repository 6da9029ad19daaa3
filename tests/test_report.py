"""The reproduction report: its pieces on a synthetic family, then the quick demo report."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pandas as pd
import pytest
import torch

from tadrop.figures import (
    drop_rate_by_component,
    drop_rate_by_layer,
    drop_rate_heatmap,
    figures_to_svg,
    weighted_drop_rate,
)
from tadrop.report import write_report
from tadrop.report.experiments import SETTINGS, Row, finetuned_state, scaled_model_for
from tadrop.report.markdown import grid_table, normalized_average
from tadrop.report.zoo_report import sweep_table
from tadrop.task_vectors import load_family
from tests.family_fixtures import write_family


class DistanceBench:
    """A stand-in evaluator: 'accuracy' of a model on task k is exp(-||theta - theta_k|| / ||tau_k||),
    1 for the fine-tuned model itself. Enough to drive every table of the report."""

    zoo = "synthetic"
    size = "quick"
    description = {"models": "synthetic family of 3 tasks"}

    def __init__(self, family) -> None:
        self.family = family
        self.calls = 0

    def accuracy(self, model_for, split):
        self.calls += 1
        scores = {}
        for task in self.family.task_names:
            model, target = model_for(task), finetuned_state(self.family, task)
            distance = sum(
                float((model[n].float() - target[n].float()).norm() ** 2)
                for n in self.family.tensor_names
            )
            norm = sum(
                float((target[n].float() - self.family.base.get(n).float()).norm() ** 2)
                for n in self.family.tensor_names
            )
            offset = 0.0 if split == "test" else 0.01
            scores[task] = math.exp(-math.sqrt(distance / norm)) - offset
        return scores

    def base_accuracy(self):
        return self.accuracy(
            lambda task: {n: self.family.base.get(n) for n in self.family.base.keys()}, "test"
        )


@pytest.fixture
def family(tmp_path: Path):
    base, tasks = write_family(tmp_path / "models", tasks=3)
    return load_family(base, tasks)


def test_scaled_model_is_linear_in_lambda(family) -> None:
    from tadrop.merge import run_merge
    from tadrop.registry import build_merge

    at_one = run_merge(
        family, *build_merge("task_arithmetic", None, {"scaling": 1.0}), device="cpu"
    )
    at_half = run_merge(
        family, *build_merge("task_arithmetic", None, {"scaling": 0.5}), device="cpu"
    )
    scaled = scaled_model_for(at_one, 0.5)("task0")
    for name in family.tensor_names:
        torch.testing.assert_close(scaled[name], at_half.model_for()[name], rtol=1e-6, atol=1e-7)


def test_report_on_a_synthetic_bench(family, tmp_path: Path) -> None:
    bench = DistanceBench(family)
    bench.zoo = "text"
    readme = write_report(
        tmp_path / "report",
        zoos=("text",),
        size="quick",
        device="cpu",
        log=lambda message: None,
        benches={"text": bench},
    )
    text = readme.read_text()
    for heading in (
        "Tables 1/2",
        "Normalized accuracy",
        "How lambda was chosen",
        "Table 4",
        "Table 7",
        "Fig. 1",
        "Figs. 5-7",
        "paper's claims",
    ):
        assert heading in text, heading
    results = json.loads((tmp_path / "report" / "results.json").read_text())["zoos"]["text"]
    main = {row["name"].split(" (lambda")[0]: row for row in results["main"]}
    assert main["Individual fine-tuned"]["average"] == pytest.approx(1.0)
    assert main["Base (pre-trained, linear-probe heads)"]["average"] == pytest.approx(math.exp(-1))
    assert main["EMR + TADrop"]["sparsity"] > 0.2 and main["EMR"]["sparsity"] == 0
    quick = SETTINGS["quick"]
    assert len(results["quantile_grid"]) == len(quick.a_grid) * len(quick.b_grid)
    assert len(results["ablation"]) == 6
    for name in (
        "fig1_sparsity_text.svg",
        "fig5_landscape_text.svg",
        "fig6_layers_text.svg",
        "fig7_components_text.svg",
    ):
        ElementTree.parse(tmp_path / "report" / name)  # well-formed SVG
        assert f"]({name})" in text
    uniform = results["sparsity_sweep"]["Uniform rate (same sparsity)"]
    adaptive = results["sparsity_sweep"]["TADrop (per-tensor rate)"]
    for u_row, a_row in zip(uniform, adaptive, strict=True):
        assert u_row["sparsity"] == pytest.approx(a_row["sparsity"], abs=0.02)
    with pytest.raises(ValueError, match="already exists"):
        write_report(
            tmp_path / "report", zoos=("text",), log=lambda message: None, benches={"text": bench}
        )


def test_lambda_is_chosen_on_validation(family) -> None:
    from tadrop.report.experiments import tuned_row

    bench = DistanceBench(family)
    row, scores = tuned_row(bench, "TA", "task_arithmetic", None, SETTINGS["quick"].scalings, "cpu")
    assert set(scores) == set(SETTINGS["quick"].scalings)
    best = max(scores, key=scores.get)
    assert row.name == f"TA (lambda={best:g})"
    # the test row equals a real merge at the chosen lambda, scored on the test split
    from tadrop.merge import run_merge
    from tadrop.registry import build_merge

    direct = run_merge(
        family, *build_merge("task_arithmetic", None, {"scaling": best}), device="cpu"
    )
    assert row.accuracy == pytest.approx(bench.accuracy(direct.model_for, "test"), rel=1e-5)


def test_normalized_average_and_grid_table() -> None:
    individual = Row("Individual", {"x": 0.8, "y": 0.5})
    merged = Row("Merged", {"x": 0.4, "y": 0.5})
    assert normalized_average(merged, individual) == pytest.approx(0.75)
    rows = [
        Row(f"a={a}, b={b}", {"x": a + b}, sparsity=a) for a in (0.45, 0.5) for b in (0.9, 0.95)
    ]
    table = grid_table(rows).splitlines()
    assert table[0] == "| a \\ b | 0.9 | 0.95 |"
    assert table[3] == "| 0.5 | 140.00 (0.50) | 145.00 (0.50) |"


def test_report_figures_export_as_well_formed_svg() -> None:
    rates = pd.DataFrame(
        {
            "task": ["t1", "t1", "t2", "t2"],
            "tensor": ["l.0.q", "l.1.mlp", "l.0.q", "l.1.mlp"],
            "layer": [0, 1, 0, float("nan")],
            "kind": ["attn.q", "mlp.up", "attn.q", "mlp.up"],
            "numel": [1, 3, 1, 3],
            "drop_rate": [0.2, 0.6, float("nan"), 0.5],
        }
    )
    sweep = {"s": [Row("p", {"x": 0.5}, sparsity=0.1), Row("q", {"x": float("nan")}, sparsity=0.5)]}
    drawn = {
        "sweep.svg": sweep_figure_for_test(sweep),
        "heat.svg": drop_rate_heatmap(rates, "h"),
        "layers.svg": drop_rate_by_layer(rates, "Fig. 6 - layers"),
        "kinds.svg": drop_rate_by_component(rates, "k"),
        "empty.svg": drop_rate_by_layer(rates.iloc[:0], "e"),
    }
    svgs = figures_to_svg(drawn)
    assert set(svgs) == set(drawn)
    for svg in svgs.values():
        ElementTree.fromstring(svg)
    assert "Fig. 6 - layers" in svgs["layers.svg"]


def test_export_without_a_browser_says_what_to_do(monkeypatch, tmp_path) -> None:
    from tadrop.figures import export_problem

    missing = tmp_path / "no-chromium"
    monkeypatch.setenv("BROWSER_PATH", str(missing))
    assert export_problem() == f"BROWSER_PATH={missing} is not a file"
    with pytest.raises(RuntimeError, match="set BROWSER_PATH"):
        figures_to_svg({"empty.svg": drop_rate_by_layer(pd.DataFrame(columns=["layer"]), "e")})


def sweep_figure_for_test(sweep):
    from tadrop.figures import sparsity_sweep

    table = sweep_table(sweep)
    assert table["score"].tolist()[0] == pytest.approx(50.0)
    return sparsity_sweep(table, score_label="average accuracy (%)", title="Fig. 1")


def test_weighted_drop_rate_is_the_fraction_of_entries_dropped() -> None:
    rates = pd.DataFrame(
        {"task": ["t", "t"], "kind": ["a", "b"], "numel": [1, 3], "drop_rate": [0.2, 0.6]}
    )
    assert weighted_drop_rate(rates, ["task"])["t"] == pytest.approx((0.2 * 1 + 0.6 * 3) / 4)
    assert weighted_drop_rate(rates, ["kind", "task"])[("b", "t")] == pytest.approx(0.6)


@pytest.mark.slow
def test_quick_report_on_the_text_zoo(quick_text_zoo, tmp_path: Path, monkeypatch, capsys) -> None:
    """`tadrop report --size quick` end to end on the session's quick text zoo."""
    from tadrop.cli import main

    monkeypatch.setenv("TADROP_HOME", str(quick_text_zoo.root.parent.parent))
    out = tmp_path / "reproduction"
    assert main(["report", "--zoo", "text", "--size", "quick", "-o", str(out), "--json"]) == 0
    results = json.loads((out / "results.json").read_text())["zoos"]["text"]
    main_rows = {row["name"].split(" (lambda")[0]: row for row in results["main"]}
    tasks = quick_text_zoo.tasks[: SETTINGS["quick"].max_tasks]
    assert list(main_rows["Individual fine-tuned"]["accuracy"]) == tasks
    for row in main_rows.values():
        assert all(0 <= value <= 1 for value in row["accuracy"].values())
    # the individual models were trained for their task: far above chance on the test half
    chance = {task: 1 / len(quick_text_zoo.label_names(task)) for task in tasks}
    assert all(main_rows["Individual fine-tuned"]["accuracy"][t] > chance[t] for t in tasks)
    text = (out / "README.md").read_text()
    assert "## Headline" in text and "Table 7" in text and "fig5_landscape_text.svg" in text

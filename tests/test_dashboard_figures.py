"""The dashboard's figures: pure functions from synthetic tables shaped like the statistics table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard import figures

KINDS_BY_LAYER = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.down")


def make_stats(tasks=("sst2", "ag_news"), layers=3, seed=0) -> pd.DataFrame:
    """A statistics table like ``compute_stats``: per-layer tensors plus an embedding."""
    rng = np.random.default_rng(seed)
    rows = []
    names = [("embeddings.word_embeddings.weight", None, "embedding", 1000)]
    for layer in range(layers):
        for kind in KINDS_BY_LAYER:
            names.append((f"encoder.layer.{layer}.{kind}.weight", layer, kind, 64))
    names.append(("classifier.weight", None, "head", 32))
    for task in tasks:
        for tensor, layer, kind, numel in names:
            std = float(rng.uniform(0.001, 0.01))
            rows.append(
                {
                    "task": task,
                    "tensor": tensor,
                    "layer": layer,
                    "kind": kind,
                    "param": "weight",
                    "shape": (numel,),
                    "numel": numel,
                    "mean": 0.0,
                    "std": std,
                    "mean_abs": std * 0.8,
                    "l2": std * numel**0.5,
                    "max_abs": std * 4,
                    "zero_frac": 0.0,
                    "kurtosis": float(rng.uniform(3, 9)),
                    "q_a": std * 0.67,
                    "q_b": std * 1.96,
                    "drop_rate": float(rng.uniform(0.2, 0.5)),
                    "sketch": np.linspace(0, std * 4, 1001),
                }
            )
    return pd.DataFrame(rows)


def test_statistic_heatmap_is_task_by_layer_with_layer_medians():
    stats = make_stats()
    figure = figures.statistic_heatmap(stats, "std")
    heatmap = figure.data[0]
    assert list(heatmap.y) == ["ag_news", "sst2"]
    assert [int(x) for x in heatmap.x] == [0, 1, 2]
    expected = stats[(stats.task == "sst2") & (stats.layer == 1)]["std"].median()
    assert heatmap.z[1][1] == pytest.approx(expected)


def test_statistic_heatmap_without_layers_says_so():
    stats = make_stats()
    figure = figures.statistic_heatmap(stats[stats.layer.isna()], "std")
    assert "No tensor with a layer index" in figure.layout.annotations[0].text


def test_group_distribution_splits_attention_and_mlp():
    figure = figures.group_distribution_by_layer(make_stats(), "kurtosis")
    assert {trace.name for trace in figure.data} == {"attention", "mlp"}
    attention = next(trace for trace in figure.data if trace.name == "attention")
    assert len(attention.y) == 2 * 3 * 4  # tasks x layers x attention kinds


def test_kinds_in_layer_has_one_box_per_kind_of_that_layer():
    figure = figures.kinds_in_layer(make_stats(), 2, "std")
    assert sorted(trace.name for trace in figure.data) == sorted(KINDS_BY_LAYER)
    assert (
        "Layer 9 has no tensor"
        in figures.kinds_in_layer(make_stats(), 9, "std").layout.annotations[0].text
    )


def test_up_vs_down_draws_one_line_per_task_and_projection():
    figure = figures.up_vs_down(make_stats(), "mean_abs")
    assert len(figure.data) == 4
    assert all(len(trace.x) == 3 for trace in figure.data)
    no_mlp = make_stats().query("kind != 'mlp.up' and kind != 'mlp.down'")
    assert figures.up_vs_down(no_mlp, "std").layout.annotations


def histogram(lefts, rights, counts) -> pd.DataFrame:
    return pd.DataFrame({"left": lefts, "right": rights, "count": counts})


def test_magnitude_histogram_draws_every_bin_and_marks_quantiles():
    bins = histogram([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [5, 3, 1])
    figure = figures.magnitude_histogram(bins, q_a=0.67, q_b=1.96, threshold=0.2, a=0.5, b=0.95)
    steps = figure.data[0]
    assert list(steps.x) == [0.0, 1.0, 2.0, 3.0] and list(steps.y) == [5, 3, 1, 1]
    assert [shape.x0 for shape in figure.layout.shapes] == [0.67, 1.96, 0.2]
    names = " ".join(trace.name for trace in figure.data[1:])
    assert "Q_0.5" in names and "Q_0.95" in names and "drop threshold" in names


def test_magnitude_histogram_on_log_axes_moves_a_zero_left_edge():
    bins = histogram([0.0, 1e-3, 1e-2], [1e-3, 1e-2, 1e-1], [2, 4, 8])
    figure = figures.magnitude_histogram(
        bins, q_a=1e-3, q_b=1e-2, threshold=0.0, a=0.5, b=0.95, log_x=True, log_y=True
    )
    assert figure.data[0].x[0] == pytest.approx(1e-4)
    assert figure.layout.xaxis.type == "log" and figure.layout.yaxis.type == "log"
    assert len(figure.layout.shapes) == 2  # a zero threshold has no place on a log axis
    empty = histogram([0.0], [1.0], [0])
    assert figures.magnitude_histogram(
        empty, q_a=0, q_b=0, threshold=0, a=0.5, b=0.95
    ).layout.annotations


def test_drop_rate_heatmap_keeps_model_order_of_tensors():
    stats = make_stats()
    figure = figures.drop_rate_heatmap(stats)
    assert list(figure.data[0].x) == list(pd.unique(stats.tensor))
    first = stats[(stats.task == "ag_news")].drop_rate.iloc[0]
    assert figure.data[0].z[0][0] == pytest.approx(first)


def test_drop_rate_by_kind_layer_averages_tasks():
    stats = make_stats()
    figure = figures.drop_rate_by_kind_layer(stats)
    grid = figure.data[0]
    row = list(grid.y).index("mlp.up")
    expected = stats[(stats.kind == "mlp.up") & (stats.layer == 0)].drop_rate.mean()
    assert grid.z[row][0] == pytest.approx(expected)


def test_uniform_contrast_draws_each_tasks_uniform_rate():
    stats = make_stats()
    figure = figures.uniform_rate_contrast(stats, {"sst2": 0.3, "ag_news": 0.4})
    assert [trace.name for trace in figure.data] == [
        "sst2: TADrop",
        "sst2: uniform 0.300",
        "ag_news: TADrop",
        "ag_news: uniform 0.400",
    ]
    assert list(figure.data[0].y) == list(stats[stats.task == "sst2"].drop_rate)
    assert list(figure.data[1].y) == [0.3, 0.3]


def results_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run": ["emr", "emr", "emr+tadrop", "emr+tadrop"],
            "task": ["sst2", "ag_news"] * 2,
            "metric": ["accuracy"] * 4,
            "merged": [0.8, 0.7, 0.82, 0.71],
            "individual": [0.9, 0.8, 0.9, 0.8],
            "base": [0.5, 0.25, 0.5, 0.25],
            "normalized": [0.8 / 0.9, 0.7 / 0.8, 0.82 / 0.9, 0.71 / 0.8],
        }
    )


def test_results_bars_put_runs_beside_individual_and_base():
    figure = figures.results_bars(results_table())
    assert [trace.name for trace in figure.data] == ["emr", "emr+tadrop", "individual", "base"]
    assert figure.layout.barmode == "group"
    normalized = figures.results_bars(results_table(), value="normalized")
    assert list(normalized.data[2].y) == [1.0, 1.0, 1.0]  # individual / individual


def test_sweep_and_sensitivity_figures():
    sweep = pd.DataFrame(
        {"sparsifier": ["dare"] * 3, "sparsity": [0.9, 0.1, 0.5], "score": [0.5, 0.9, 0.8]}
    )
    line = figures.sparsity_sweep(sweep)
    assert list(line.data[0].x) == [0.1, 0.5, 0.9]
    grid = pd.DataFrame({"a": [0.4, 0.4, 0.5, 0.5], "b": [0.9, 0.95] * 2, "score": [1, 2, 3, 4]})
    heatmap = figures.sensitivity_heatmap(grid).data[0]
    assert heatmap.z.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    "draw",
    [
        lambda empty: figures.drop_rate_heatmap(empty),
        lambda empty: figures.uniform_rate_contrast(empty, {}),
        lambda empty: figures.results_bars(empty),
        lambda empty: figures.sparsity_sweep(empty),
        lambda empty: figures.sensitivity_heatmap(empty),
    ],
)
def test_empty_tables_give_a_figure_with_a_message(draw):
    figure = draw(pd.DataFrame())
    assert isinstance(figure, go.Figure) and figure.layout.annotations


@pytest.mark.parametrize(
    "module",
    ["figures", "paths", "uploads", "runs", "sweeps", "exports", "png", "sources", "demo"],
)
def test_logic_modules_do_not_import_streamlit(module):
    """Only app.py, views/, state.py and widgets.py may touch streamlit."""
    import ast
    from pathlib import Path

    source = Path(figures.__file__).with_name(f"{module}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "streamlit" not in imported

"""The Merge and Learn pages in streamlit's AppTest on a small synthetic family: the zoomed
results chart with error bars and references, the matched sparsity sweep and its table, the
diagnostics' explanations, and Learn's histogram following a and b."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest
from test_dashboard_app import data_root, family_source, messages, open_app  # noqa: F401

from dashboard.runs import RunRecord
from tadrop.diagnostics import COLUMN_HELP


def chart(app, key: str) -> dict:
    """The plotly figure a page drew under ``key``, as its JSON."""
    (element,) = [element for element in app.get("plotly_chart") if key in element.proto.id]
    return json.loads(element.proto.spec)


def numbers(value) -> list[float]:
    """A plotly JSON array: a list, or plotly's typed {"dtype", "bdata"} encoding."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return list(value)


def evaluated_run(number: int, merged: list[float]) -> RunRecord:
    record = RunRecord(number, "emr", "tadrop", {}, {"a": 0.5, "b": 0.95}, "f", "k", {}, 1.0)
    record.results = pd.DataFrame(
        {
            "task": ["task0", "task1"],
            "metric": ["accuracy"] * 2,
            "merged": merged,
            "individual": [0.9, 0.8],
            "base": [0.6, 0.55],
            "normalized": [m / i for m, i in zip(merged, [0.9, 0.8], strict=True)],
            "n": [100, 400],
        }
    )
    return record


def test_compare_runs_chart_zooms_and_carries_errors_n_and_references(family_source):  # noqa: F811
    app = open_app(family_source, "merge")
    app.session_state["runs"] = [evaluated_run(1, [0.8, 0.7]), evaluated_run(2, [0.85, 0.75])]
    app.run()
    assert not app.exception and not messages(app, "error")
    figure = chart(app, "merge_bars")
    names = [trace.get("name") for trace in figure["data"]]
    assert names == ["#1 emr + tadrop (a=0.5, b=0.95)", "#2 emr + tadrop (a=0.5, b=0.95)",
                     "individual", "base"]  # fmt: skip
    bars = figure["data"][0]
    assert bars["x"] == ["task0<br>n = 100", "task1<br>n = 400", "mean<br>Σn = 500"]
    assert numbers(bars["error_y"]["array"])[:2] == pytest.approx([0.04, (0.7 * 0.3 / 400) ** 0.5])
    low, high = figure["layout"]["yaxis"]["range"]
    assert 0.45 < low < 0.55 and 0.9 < high <= 1.0  # lowest drawn: base 0.55; highest 0.9
    assert any("n, its number of test examples" in text for text in messages(app, "caption"))


def test_diagnostics_columns_are_explained(family_source):  # noqa: F811
    app = open_app(family_source, "merge")
    app.checkbox(key="merge_compare").uncheck().run()
    app.button(key="merge_run").click().run()  # no evaluation data: data-free diagnostics
    assert not app.exception and not messages(app, "error")
    captions = " ".join(messages(app, "caption"))
    for column in ("cosine", "rel_l2", "sign_conflict", "mask_overlap"):
        assert f"**{column}**: {COLUMN_HELP[column]}" in captions


def test_the_sweep_runs_every_sparsifier_at_the_same_targets_and_lists_them(family_source):  # noqa: F811
    app = open_app(family_source, "merge")
    app.selectbox(key="merge_method").set_value("task_arithmetic").run()
    app.multiselect(key="sweep_sparsifiers").set_value(["tadrop", "uniform", "dare"]).run()
    app.text_input(key="sweep_targets").set_value("0.3, 0.7").run()
    app.button(key="sweep_run").click().run()
    assert not app.exception and not messages(app, "error")
    points = app.session_state["sweep_points"]
    assert list(points["sparsifier"]) == ["tadrop"] * 2 + ["uniform"] * 2 + ["dare"] * 2 + ["none"]
    assert list(points["target"]) == [0.3, 0.7] * 3 + [0.0]
    tadrop = points[points["sparsifier"] == "tadrop"]
    assert tadrop["sparsity"].tolist() == pytest.approx([0.3, 0.7], abs=0.01)
    assert tadrop["b"].tolist() == [0.95, 0.95] and tadrop["a"].is_monotonic_increasing
    table = [frame.value for frame in app.dataframe if "target" in frame.value.columns]
    assert len(table) == 1 and {"a", "b", "score", "sparsity"} <= set(table[0].columns)
    figure = chart(app, "sweep_figure")
    assert [shape["y0"] for shape in figure["layout"]["shapes"]] == [points["score"].iloc[-1]]


def test_learn_histogram_follows_a_and_b(family_source):  # noqa: F811
    app = open_app(family_source, "learn")
    assert not app.exception and not messages(app, "error")

    def cuts() -> list[float]:
        return sorted(shape["x0"] for shape in chart(app, "learn_histogram")["layout"]["shapes"])

    before = cuts()
    assert len(before) == 3  # Q_a, Q_b and the cut
    app.slider(key="slider_a").set_value(0.3).run()
    lower_a = cuts()
    assert lower_a != before and min(lower_a) < min(before)  # Q_0.3 < Q_0.5, and the cut drops
    app.slider(key="slider_b").set_value(0.7).run()
    assert max(cuts()) < max(lower_a)  # Q_0.7 < Q_0.95
    assert any("TADrop drops every |τ| below" in text for text in messages(app, "markdown"))

"""The Merge page's charts: zoomed y range, standard-error bars, n per task, reference marks
and means; the sparsity sweep's no-sparsifier line. Hand-computed cases first."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tadrop.figures.results import (
    error_bar_note,
    mean_group,
    results_bars,
    score_errors,
    sparsity_sweep,
    zoomed_range,
)


def test_zoomed_range_pads_a_tenth_of_the_span_each_side():
    assert zoomed_range([0.70, 0.80, 0.75]) == pytest.approx((0.69, 0.81))
    assert zoomed_range([0.5, 0.5]) == pytest.approx((0.45, 0.55))  # no span: ±0.05
    assert zoomed_range([20.0, 20.0]) == pytest.approx((19.0, 21.0))  # ±0.05 * |value|
    assert zoomed_range([0.2, 1.0, math.nan]) == pytest.approx((0.12, 1.08))
    assert zoomed_range([0.2, 1.0], bounds=(0.0, 1.0)) == pytest.approx((0.12, 1.0))
    assert zoomed_range([]) == (0.0, 1.0)


def evaluation(**columns) -> pd.DataFrame:
    table = {
        "run": ["emr", "emr"],
        "task": ["sst2", "news"],
        "metric": ["accuracy", "accuracy"],
        "merged": [0.8, 0.5],
        "individual": [0.9, 0.8],
        "base": [0.6, 0.3],
        "n": [100, 400],
    }
    table["normalized"] = [m / i for m, i in zip(table["merged"], table["individual"], strict=True)]
    return pd.DataFrame({**table, **columns})


def test_score_errors_are_binomial_on_n_unless_recorded():
    # sqrt(0.8 * 0.2 / 100) = 0.04; sqrt(0.5 * 0.5 / 400) = 0.025
    assert score_errors(evaluation()).tolist() == pytest.approx([0.04, 0.025])
    recorded = evaluation(merged_stderr=[0.01, math.nan])
    assert score_errors(recorded).tolist() == pytest.approx([0.01, 0.025])
    # normalized = merged / individual: 0.04 / 0.9, 0.025 / 0.8
    normalized = score_errors(evaluation(), "normalized").tolist()
    assert normalized == pytest.approx([0.04 / 0.9, 0.025 / 0.8])
    perplexity = evaluation(metric=["perplexity"] * 2)
    assert score_errors(perplexity).isna().all()  # no binomial error for a non-proportion


def test_the_mean_group_averages_tasks_and_combines_their_errors():
    frame = evaluation().assign(score=[0.8, 0.5], stderr=[0.04, 0.025])
    (row,) = mean_group(frame, "merged").to_dict("records")
    assert row["score"] == pytest.approx(0.65)
    assert row["stderr"] == pytest.approx(math.sqrt(0.04**2 + 0.025**2) / 2)
    assert row["n"] == 500
    assert (row["individual"], row["base"]) == pytest.approx((0.85, 0.45))


def test_results_bars_zoom_carry_error_bars_n_and_reference_marks():
    figure = results_bars(evaluation())
    bars, individual, base = figure.data
    assert (bars.type, individual.name, base.name) == ("bar", "individual", "base")
    assert list(bars.x) == ["sst2<br>n = 100", "news<br>n = 400", "mean<br>Σn = 500"]
    assert list(bars.error_y.array) == pytest.approx(
        [0.04, 0.025, math.sqrt(0.0016 + 0.000625) / 2]
    )
    assert list(individual.y) == pytest.approx([0.9, 0.8, 0.85])
    assert individual.marker.symbol == "line-ew" and base.mode == "markers"
    # mean lines of the references: dashed horizontal shapes at 0.85 and 0.45
    assert sorted(shape.y0 for shape in figure.layout.shapes) == pytest.approx([0.45, 0.85])
    # y from a little under the lowest drawn value (base 0.3) to over the highest (0.9)
    low, high = figure.layout.yaxis.range
    assert low == pytest.approx(0.3 - 0.06) and high == pytest.approx(0.9 + 0.06)
    assert low > 0
    assert "√(p(1−p)/n)" in figure.layout.title.text
    assert "not from 0" in figure.layout.yaxis.title.text


def test_normalized_bars_draw_individual_at_one_and_base_relative_to_it():
    figure = results_bars(evaluation(), value="normalized")
    _, individual, base = figure.data
    assert list(individual.y) == [1.0, 1.0, 1.0]
    assert list(base.y)[:2] == pytest.approx([0.6 / 0.9, 0.3 / 0.8])
    assert "divided by the individual" in error_bar_note(["accuracy"], "normalized")


def test_several_runs_share_one_set_of_references():
    two = pd.concat([evaluation(), evaluation(run=["ties"] * 2, merged=[0.7, 0.6])])
    names = [trace.name for trace in results_bars(two).data]
    assert names == ["emr", "ties", "individual", "base"]


def test_the_sweep_draws_the_no_sparsifier_merge_as_a_reference_line():
    sweep = pd.DataFrame(
        {
            "sparsifier": ["tadrop", "tadrop", "dare", "dare", "none"],
            "target": [0.3, 0.6, 0.3, 0.6, 0.0],
            "sparsity": [0.31, 0.6, 0.3, 0.59, 0.0],
            "a": [0.2, 0.4, None, None, None],
            "b": [0.95, 0.95, None, None, None],
            "score": [0.9, 0.85, 0.88, 0.8, 0.92],
        }
    )
    figure = sparsity_sweep(sweep)
    names = [trace.name for trace in figure.data]
    assert names == ["dare", "tadrop", "no sparsifier"]
    assert list(figure.data[1].x) == [0.31, 0.6]
    (line,) = figure.layout.shapes
    assert line.y0 == line.y1 == 0.92
    low, high = figure.layout.yaxis.range
    assert low == pytest.approx(0.788) and high == pytest.approx(0.932)


def test_runs_without_references_or_proportions_draw_bars_only_and_zoom_freely():
    own = evaluation(
        metric=["perplexity"] * 2,
        merged=[12.0, 20.0],
        individual=[math.nan] * 2,
        base=[math.nan] * 2,
        merged_stderr=[0.5, 1.0],
    )
    figure = results_bars(own)
    assert [trace.type for trace in figure.data] == ["bar"] and not figure.layout.shapes
    # drawn extents: 11.5 .. 21.0 (score ± stderr; mean 16 ± 0.56), padded by 0.95 each side
    assert figure.layout.yaxis.range == pytest.approx((11.5 - 0.95, 21.0 + 0.95))
    assert "as evaluated" in figure.layout.title.text

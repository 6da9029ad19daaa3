"""Colour ranges fitted to the data, Fig. 6/7 by component, TADrop vs uniform as panels and the
sparsity contributions figure: hand-checked on small synthetic tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_dashboard_figures import make_stats

from dashboard import figures
from tadrop.figures import color_range
from tadrop.stats import tensor_contributions


def test_color_range_spans_the_5th_to_95th_percentile_of_the_cells():
    scale = color_range(np.arange(101.0))  # percentile p of 0..100 is p
    assert (scale.zmin, scale.zmax) == pytest.approx((5.0, 95.0))
    assert scale.rule == "colours: 5-95 (5-95th percentile)"


def test_color_range_ignores_missing_cells_and_widens_a_flat_grid():
    scale = color_range([[0.3, np.nan], [0.3, 0.3]])
    assert scale.zmin == pytest.approx(0.285) and scale.zmax == pytest.approx(0.315)
    assert "every cell is 0.3" in scale.rule
    assert color_range([np.nan]).zmin is None and color_range([]).zmax is None


def test_color_range_on_the_unit_scale_is_zero_to_one_whatever_the_data():
    scale = color_range([0.33, 0.36], unit_scale=True)
    assert (scale.zmin, scale.zmax) == (0.0, 1.0) and "0-1" in scale.rule


def flat_rates() -> pd.DataFrame:
    """Drop rates between 0.33 and 0.36, like the text demo's."""
    stats = make_stats(tasks=("sst2", "ag_news", "trec", "imdb"))
    stats["drop_rate"] = np.linspace(0.33, 0.36, len(stats))
    return stats


@pytest.mark.parametrize(
    "draw",
    [
        lambda rates, unit: figures.drop_rate_heatmap(rates, unit_scale=unit),
        lambda rates, unit: figures.drop_rate_by_kind_layer(rates, unit_scale=unit),
        lambda rates, unit: figures.statistic_heatmap(rates, "drop_rate", unit_scale=unit),
    ],
)
def test_every_heatmap_fits_its_colours_to_the_data_unless_asked_for_0_1(draw):
    rates = flat_rates()
    fitted = draw(rates, False).data[0]
    cells = np.asarray(fitted.z, dtype=float)
    low, high = np.nanpercentile(cells, [5, 95])
    assert (fitted.zmin, fitted.zmax) == pytest.approx((low, high))
    assert 0.33 <= fitted.zmin < fitted.zmax <= 0.36
    assert "percentile" in fitted.colorbar.title.text
    fixed = draw(rates, True).data[0]
    assert (fixed.zmin, fixed.zmax) == (0.0, 1.0) and "0-1" in fixed.colorbar.title.text


def test_a_0_1_scale_for_a_statistic_that_is_no_fraction_is_refused():
    with pytest.raises(ValueError, match="only fractions.*'std'"):
        figures.statistic_heatmap(make_stats(), "std", unit_scale=True)


def test_fig6_has_a_bar_per_kind_and_a_point_per_kind_and_layer():
    rates = make_stats()
    figure = figures.component_drop_rates(rates, "sst2")
    bars, points = figure.data
    assert list(bars.x) == ["embedding", *KINDS, "head"]  # model order
    sst2 = rates[rates.task == "sst2"]
    embedding = sst2[sst2.kind == "embedding"].drop_rate.iloc[0]
    assert bars.y[0] == pytest.approx(embedding)
    up = sst2[sst2.kind == "mlp.up"]
    assert bars.y[list(bars.x).index("mlp.up")] == pytest.approx(up.drop_rate.mean())  # same numel
    assert len(points.x) == 3 * len(KINDS)  # layers 0-2 of every layered kind
    assert figure.layout.yaxis.range is None  # fitted to the data
    fixed = figures.component_drop_rates(rates, "sst2", unit_scale=True)
    assert tuple(fixed.layout.yaxis.range) == (0.0, 1.0)
    assert "No drop rates" in figures.component_drop_rates(rates, "nope").layout.annotations[0].text


KINDS = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.up", "mlp.down")


def test_fig7_draws_one_panel_per_task_on_shared_axes():
    rates = flat_rates()
    figure = figures.component_drop_rates_by_task(rates, unit_scale=True)
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert titles[:4] == ["sst2", "ag_news", "trec", "imdb"]
    assert len(figure.data) == 2 * 4  # bars and layer points per panel
    assert {trace.xaxis for trace in figure.data} == {"x", "x2", "x3", "x4"}
    shared = [figure.layout[f"yaxis{n}"].matches for n in ("", 2, 3, 4)]
    assert shared == ["y4", "y4", "y4", None]  # every panel on the bottom-left panel's y axis
    assert sum(trace.showlegend is not False for trace in figure.data) == 2  # legend once
    assert tuple(figure.layout.yaxis.range) == (0.0, 1.0)


def test_tadrop_vs_uniform_shows_the_chosen_task_or_one_panel_per_task():
    rates = flat_rates()
    uniform = {"sst2": 0.34, "ag_news": 0.35}
    one = figures.uniform_rate_contrast(rates, uniform, tasks=["ag_news"])
    assert [trace.name for trace in one.data] == ["ag_news: TADrop", "ag_news: uniform 0.350"]
    assert one.layout.annotations[0].text == "ag_news (uniform 0.350)"
    every = figures.uniform_rate_contrast(rates, uniform)
    titles = [annotation.text for annotation in every.layout.annotations]
    assert titles[:4] == ["sst2 (uniform 0.340)", "ag_news (uniform 0.350)", "trec", "imdb"]
    assert {trace.xaxis for trace in every.data} == {"x", "x2", "x3", "x4"}
    assert every.layout.yaxis.range is None
    missing = figures.uniform_rate_contrast(rates, uniform, tasks=["nope"])
    assert "nope" in missing.layout.annotations[0].text


def test_contributions_figure_ranks_tensors_and_marks_zero_heavy_ones():
    rates = make_stats()
    rates.loc[rates.tensor == "classifier.weight", "zero_frac"] = 0.9
    contributions = tensor_contributions(rates, rates["drop_rate"])
    contributions.loc[contributions.tensor.str.startswith("embeddings"), "drop_rate"] = 0.0
    contributions.loc[contributions.tensor.str.startswith("embeddings"), "dropped_share"] = 0.0
    figure = figures.sparsity_contributions(contributions, "sst2", top=3)
    parameters, dropped = figure.data
    sst2 = contributions[contributions.task == "sst2"]
    expected = sst2.nlargest(3, "dropped_share")
    assert list(dropped.x[1:]) == pytest.approx(list(expected.dropped_share[::-1]))
    assert dropped.y[-1] == expected.tensor.iloc[0]  # the first at the top
    # the embedding drops nothing but holds the most parameters: added at the bottom
    assert dropped.y[0] == "embeddings.word_embeddings.weight (largest)"
    assert parameters.x[0] == pytest.approx(1000 / (1000 + 18 * 64 + 32))
    assert "the 3 of 20 tensors with the most entries dropped and the largest" in (
        figure.layout.title.text
    )
    by_params = figures.sparsity_contributions(contributions, "sst2", top=20, by="param_share")
    labels = list(by_params.data[0].y)
    assert labels[-1] == "embeddings.word_embeddings.weight"
    assert "classifier.weight (mostly zeros)" in labels
    assert f"{sst2.dropped_share.sum():.1%}" in by_params.layout.title.text
    with pytest.raises(ValueError, match="Rank tensors by"):
        figures.sparsity_contributions(contributions, "sst2", by="numel")


def test_export_set_carries_the_new_figures_on_the_chosen_scale():
    rates = flat_rates()
    drawn = figures.all_figures(rates, rates, {"sst2": 0.34}, task="trec", unit_scale=True)
    for name in (
        "landscape_fig6_components_trec",
        "landscape_fig7_components_by_task",
        "landscape_sparsity_contributions_trec",
        "landscape_tadrop_vs_uniform",
    ):
        assert name in drawn
    assert drawn["landscape_drop_rate_task_by_tensor"].data[0].zmax == 1.0
    fitted = figures.all_figures(rates, rates, {})
    assert "landscape_fig6_components_sst2" in fitted  # the first task by default
    assert fitted["landscape_drop_rate_task_by_tensor"].data[0].zmax < 0.37

"""The Sparsity landscape and Heterogeneity pages in streamlit's AppTest: the 0-1 scale toggle
changes the colour range, and the page explains a dominant, zero-heavy embedding with the
family's own numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_dashboard_app import messages, open_app

from dashboard.sources import FamilySource

ALL_TASKS = "All tasks, one panel each"  # the page's choices of every task
EVERY_TASK = "All tasks (Fig. 7)"

# A word embedding with 2/3 of the parameters, whose task vectors touch 2 of its 64 rows (the
# rest exactly zero, as for tokens a task never sees), a frozen LayerNorm and dense layers.
SHAPES = {
    "embeddings.word_embeddings.weight": (64, 8),
    "encoder.layer.0.attention.self.query.weight": (8, 8),
    "encoder.layer.0.output.LayerNorm.weight": (8,),
    "encoder.layer.0.intermediate.dense.weight": (16, 8),
    "encoder.layer.1.attention.self.query.weight": (8, 8),
}
EMBEDDING = "embeddings.word_embeddings.weight"


def write_lopsided_family(root: Path, tasks: int = 3) -> FamilySource:
    generator = torch.Generator().manual_seed(0)
    base = {name: torch.randn(shape, generator=generator) for name, shape in SHAPES.items()}
    folders = []
    for index, name in enumerate(["base", *(f"task{task}" for task in range(tasks))]):
        state = dict(base)
        if index:
            delta = {
                name: torch.randn(shape, generator=generator) for name, shape in SHAPES.items()
            }
            delta[EMBEDDING][2:] = 0.0  # rows the task never touched
            delta["encoder.layer.0.output.LayerNorm.weight"].zero_()  # frozen
            state = {name: base[name] + 0.01 * delta[name] for name in base}
        folder = root / name
        folder.mkdir(parents=True)
        save_file(state, str(folder / "model.safetensors"))
        (folder / "config.json").write_text('{"model_type": "bert"}')
        folders.append(str(folder))
    return FamilySource(
        label="lopsided",
        base=folders[0],
        finetuned=tuple(folders[1:]),
        task_names=tuple(f"task{task}" for task in range(tasks)),
    )


@pytest.fixture
def lopsided(tmp_path, monkeypatch) -> FamilySource:
    monkeypatch.setenv("TADROP_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("TADROP_HOME", str(tmp_path / "no_demo_here"))
    return write_lopsided_family(tmp_path / "family")


def chart(app, key: str) -> dict:
    """The plotly figure (as JSON) of the chart with this key."""
    (element,) = [element for element in app.get("plotly_chart") if element.proto.id.endswith(key)]
    return json.loads(element.proto.spec)


def test_the_0_1_toggle_switches_the_landscape_from_fitted_colours_to_0_1(lopsided):
    app = open_app(lopsided, "landscape")
    assert not app.exception and not messages(app, "error")
    fitted = chart(app, "landscape_heatmap")["data"][0]
    assert 0.0 <= fitted["zmin"] < fitted["zmax"] <= 1.0
    assert (fitted["zmin"], fitted["zmax"]) != (0.0, 1.0)
    assert "percentile" in fitted["colorbar"]["title"]["text"]
    app.toggle(key="landscape_unit_scale").set_value(True).run()
    fixed = chart(app, "landscape_heatmap")["data"][0]
    assert (fixed["zmin"], fixed["zmax"]) == (0.0, 1.0)
    assert chart(app, "landscape_fig6")["layout"]["yaxis"]["range"] == [0.0, 1.0]
    app.radio(key="landscape_components_view").set_value(EVERY_TASK).run()
    fig7 = chart(app, "landscape_fig7")
    assert fig7["layout"]["yaxis"]["range"] == [0.0, 1.0]
    assert [title["text"] for title in fig7["layout"]["annotations"][:3]] == [
        "task0",
        "task1",
        "task2",
    ]


def test_the_page_explains_the_dominant_zero_heavy_embedding(lopsided):
    app = open_app(lopsided, "landscape")
    text = " ".join(messages(app, "markdown"))
    assert f"One tensor dominates.** `{EMBEDDING}` holds 66%" in text  # 512 of 776 entries
    # the embedding and the frozen LayerNorm, both with exact zeros
    assert "2 of 5 tensors are mostly zeros** (2 with over 50% of τ exactly 0, 0 with" in text
    assert f"The biggest is `{EMBEDDING}`: 97% exact zeros, d = 0.000" in text  # 62 of 64 rows
    app.selectbox(key="landscape_contribution_task").set_value("task2").run()
    assert not app.exception and not messages(app, "error")
    assert "task2:" in chart(app, "landscape_contributions")["layout"]["title"]["text"]


def test_the_contrast_shows_one_task_or_every_task(lopsided):
    app = open_app(lopsided, "landscape")
    assert len(chart(app, "landscape_contrast")["data"]) == 2  # task0: TADrop and uniform
    app.selectbox(key="landscape_contrast_task").set_value(ALL_TASKS).run()
    assert len(chart(app, "landscape_contrast")["data"]) == 6


def test_the_heterogeneity_toggle_works_for_fractions_only(lopsided):
    app = open_app(lopsided, "heterogeneity")
    assert app.toggle(key="het_unit_scale").disabled  # std is no fraction
    app.selectbox(key="het_statistic").set_value("drop_rate").run()
    toggle = app.toggle(key="het_unit_scale")
    assert not toggle.disabled
    assert chart(app, "het_heatmap")["data"][0]["zmax"] < 1.0
    toggle.set_value(True).run()
    assert chart(app, "het_heatmap")["data"][0]["zmax"] == 1.0
    assert not app.exception and not messages(app, "error")

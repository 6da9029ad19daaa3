"""The dashboard on the quick text demo zoo (AppTest): every page renders, and EMR with and
without TADrop is evaluated on the zoo's test sets and compared."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from tadrop.config import validate_config

pytestmark = pytest.mark.slow  # reads the quick demo zoo (built once per session by conftest)

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
PAGES = ["models", "heterogeneity", "landscape", "merge", "export", "learn"]


@pytest.fixture
def demo_env(quick_text_zoo, tmp_path, monkeypatch) -> Path:
    """The app's environment: the zoo's home, a fresh data root (returned)."""
    monkeypatch.setenv("TADROP_HOME", str(quick_text_zoo.root.parent.parent))
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("TADROP_DATA_ROOT", str(root))
    return root.resolve()


def open_page(page: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=600).run()
    if page != "models":
        app.switch_page(f"views/{page}.py").run()
    return app


def errors(app: AppTest) -> list[str]:
    return [element.value for element in app.error]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_demo_zoo(demo_env, quick_text_zoo, page):
    app = open_page(page)
    assert not app.exception, app.exception
    assert not errors(app)
    if page == "models":
        metrics = {metric.label: metric.value for metric in app.metric}
        assert metrics["Tasks"] == str(len(quick_text_zoo.tasks))
    if page == "heterogeneity":
        assert app.get("plotly_chart"), "the heatmap is drawn"


def test_emr_with_and_without_tadrop_is_evaluated_and_compared(demo_env, quick_text_zoo):
    merged_tasks = quick_text_zoo.tasks[:2]  # two tasks keep the test short; same code path
    app = open_page("models")
    app.multiselect(key="models_demo_tasks").set_value(merged_tasks).run()
    assert {metric.label: metric.value for metric in app.metric}["Tasks"] == "2"
    app.switch_page("views/merge.py").run()
    assert app.selectbox(key="merge_method").value == "emr"
    assert app.selectbox(key="merge_sparsifier").value == "tadrop"
    assert app.checkbox(key="merge_evaluate").value
    app.button(key="merge_run").click().run()
    assert not app.exception and not errors(app)
    runs = app.session_state["runs"]
    assert [run.label for run in runs] == ["#1 emr + tadrop (a=0.5, b=0.95)", "#2 emr"]
    for run in runs:
        table = run.results
        assert list(table["task"]) == merged_tasks
        assert table["merged"].between(0, 1).all()
        assert (table["normalized"] == table["merged"] / table["individual"]).all()
    assert runs[0].mean_sparsity > 0.1 and runs[1].mean_sparsity == 0.0
    shown = app.table[0].value
    assert len(shown) == 2 * len(merged_tasks)  # both runs, side by side
    bars = app.get("plotly_chart")[0].proto.spec
    assert "emr + tadrop" in bars and "individual" in bars

    app.switch_page("views/export.py").run()
    config = yaml.safe_load(app.code[-1].value)
    assert config["demo"] == {"zoo": "text", "size": "quick", "tasks": merged_tasks}
    assert "eval" in config
    assert validate_config(config, folder=demo_env).method == "emr"

"""The dashboard's choice of demo family: text zoo, image zoo or the synthetic family."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import demo
from tadrop.zoo import synthetic

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


@pytest.fixture
def synthetic_env(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    synthetic.build_synthetic(home)
    monkeypatch.setenv("TADROP_HOME", str(home))
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("TADROP_DATA_ROOT", str(root))
    return home


def test_synthetic_family_is_a_demo_choice_without_evaluation(synthetic_env):
    source = demo.demo_source(which="synthetic")
    assert source is not None and source.task_names == synthetic.TASKS
    assert not source.is_demo  # no labelled data: the merge page offers diagnostics only
    assert demo.demo_choice_of(source) == "synthetic"
    assert "synthetic" in source.label
    assert demo.demo_source(["task_b"], which="synthetic").task_names == ("task_b",)
    assert demo.demo_source(which="image") is None  # not built in this home
    with pytest.raises(ValueError, match="choose one of text, image, synthetic"):
        demo.demo_source(which="audio")


def test_models_page_switches_to_the_synthetic_family(synthetic_env):
    app = AppTest.from_file(APP, default_timeout=300)
    app.session_state["demo_build_tried"] = True  # no automatic build of the text zoo
    app.run()
    assert app.radio(key="models_demo_family").options == list(demo.DEMO_FAMILIES.values())
    app.radio(key="models_demo_family").set_value("synthetic").run()
    assert not app.exception, app.exception
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Tasks"] == str(len(synthetic.TASKS))

"""The dashboard in streamlit's AppTest on a small synthetic family written as real checkpoints:
pages render, widgets change what is shown, errors are messages, sessions are separate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from family_fixtures import write_family
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from dashboard.sources import FamilySource
from tadrop import registry
from tadrop import stats as tadrop_stats
from tadrop.config import validate_config
from tadrop.io import FileCheckpoint

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
PAGES = ["models", "heterogeneity", "landscape", "merge", "export", "learn"]


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("TADROP_DATA_ROOT", str(root))
    monkeypatch.setenv("TADROP_HOME", str(tmp_path / "no_demo_here"))
    return root.resolve()


@pytest.fixture
def family_source(data_root) -> FamilySource:
    base, tasks = write_family(data_root / "family", tasks=3)
    return FamilySource(
        label="synthetic",
        base=str(base),
        finetuned=tuple(str(path) for path in tasks.values()),
        task_names=tuple(tasks),
    )


def open_app(source: FamilySource | None = None, page: str = "models") -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    app.session_state["demo_build_tried"] = True  # no demo zoo here: do not build one
    if source is not None:
        app.session_state["family_source"] = source
    app.run()
    if page != "models":
        app.switch_page(f"views/{page}.py").run()
    return app


def messages(app: AppTest, kind: str) -> list[str]:
    return [element.value for element in getattr(app, kind)]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_a_synthetic_family(family_source, page):
    app = open_app(family_source, page)
    assert not app.exception, app.exception
    assert not messages(app, "error")
    assert app.title[0].value


@pytest.mark.parametrize("page", PAGES[1:])
def test_without_a_family_each_page_points_to_models(data_root, page):
    app = open_app(None, page)
    assert not app.exception
    assert any("No model family is loaded" in text for text in messages(app, "info"))


def test_models_page_loads_typed_paths_and_summarises_the_family(family_source):
    app = open_app()
    app.radio(key="models_choice").set_value("My checkpoints").run()
    typed = "\n".join(["family/base", "family/task0", "family/task1"])
    app.text_area(key="models_typed").set_value(typed)
    app.button[-1].click().run()  # the form's Load button
    assert not app.exception and not messages(app, "error")
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Tasks"] == "2"
    assert metrics["Tensors merged"] == "9"
    skipped = app.dataframe[-1].value
    assert list(skipped["tensor"]) == ["embeddings.position_ids"]
    assert "non-float" in skipped["reason"].iloc[0]


def test_models_page_refuses_paths_outside_the_data_root(family_source):
    app = open_app()
    app.radio(key="models_choice").set_value("My checkpoints").run()
    app.text_area(key="models_typed").set_value("family/base\n../outside")
    app.button[-1].click().run()
    assert not app.exception
    assert any("'..' are refused" in text for text in messages(app, "error"))


def test_a_mismatched_family_is_a_readable_message(family_source, data_root):
    odd = data_root / "odd"
    odd.mkdir()
    save_file({"something.else": torch.zeros(3)}, str(odd / "model.safetensors"))
    app = open_app()
    app.radio(key="models_choice").set_value("My checkpoints").run()
    app.text_area(key="models_typed").set_value("family/base\nodd")
    app.button[-1].click().run()
    assert not app.exception
    (error,) = messages(app, "error")
    assert "does not match the base" in error and "missing" in error


def test_prefixed_keys_load_only_when_asked_to_align_them(data_root):
    for folder, prefix, scale in (("base", "", 0.0), ("task", "model.", 1.0)):
        (data_root / folder).mkdir()
        tensors = {f"{prefix}encoder.layer.0.mlp.fc1.weight": torch.full((4, 4), scale)}
        save_file(tensors, str(data_root / folder / "model.safetensors"))
    app = open_app()
    app.radio(key="models_choice").set_value("My checkpoints").run()
    app.text_area(key="models_typed").set_value("base\ntask")
    app.button[-1].click().run()
    assert any("prefix 'model.'" in text for text in messages(app, "error"))
    app.checkbox(key="models_align").check()
    app.button[-1].click().run()
    assert not messages(app, "error") and not app.exception
    assert {metric.label: metric.value for metric in app.metric}["Tensors merged"] == "1"


def test_uploads_keep_safetensors_under_the_data_root_and_refuse_the_rest(data_root, tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"weight": torch.ones(2)}, str(good))
    app = open_app()
    app.radio(key="models_choice").set_value("My checkpoints").run()
    uploader = app.get("file_uploader")[0]
    uploader.upload("my model.safetensors", good.read_bytes())
    uploader.upload("fake.safetensors", b"\x80\x04K\x01.")
    uploader.run()
    assert not app.exception
    assert (data_root / "uploads" / "my_model.safetensors").read_bytes() == good.read_bytes()
    assert not (data_root / "uploads" / "fake.safetensors").exists()
    assert any("fake.safetensors: too short" in text for text in messages(app, "error"))
    assert any("uploads/my_model.safetensors" in text for text in messages(app, "success"))


def test_moving_b_changes_the_drop_rate_table_and_the_sparsity(family_source):
    app = open_app(family_source, "landscape")
    table_before = app.dataframe[0].value.copy()
    overall_before = app.metric[0].value
    app.slider(key="slider_b").set_value(0.8).run()
    assert not app.exception
    table_after = app.dataframe[0].value
    assert (table_after.to_numpy() > table_before.to_numpy()).all()  # smaller Q_b: larger d
    assert app.metric[0].value != overall_before
    app.switch_page("views/heterogeneity.py").run()
    assert "b = 0.8" in app.caption[0].value  # the setting follows to other pages


def test_moving_a_slider_reads_no_tensor(family_source, monkeypatch):
    app = open_app(family_source, "landscape")  # statistics computed here, once

    def no_reading(self, name):
        raise AssertionError(f"read {name} after the statistics were computed")

    monkeypatch.setattr(FileCheckpoint, "get", no_reading)
    for b in (0.9, 0.7, 0.99):
        app.slider(key="slider_b").set_value(b).run()
        assert not app.exception and not messages(app, "error")
    monkeypatch.undo()
    monkeypatch.setattr(tadrop_stats, "compute_stats", no_reading)
    app.switch_page("views/heterogeneity.py").run()  # the statistics table is not recomputed
    assert not app.exception and not messages(app, "error")


def test_a_equal_to_b_is_refused_with_a_message(family_source):
    app = open_app(family_source, "landscape")
    app.slider(key="slider_a").set_value(0.9).run()
    app.slider(key="slider_b").set_value(0.9).run()
    assert not app.exception
    assert any("needs a < b" in text for text in messages(app, "error"))


def test_heterogeneity_statistic_and_drilldown_follow_the_widgets(family_source):
    app = open_app(family_source, "heterogeneity")
    heatmap_before = app.get("plotly_chart")[0].proto.spec
    app.selectbox(key="het_statistic").set_value("kurtosis").run()
    assert app.get("plotly_chart")[0].proto.spec != heatmap_before
    app.selectbox(key="het_tensor").set_value("encoder.layer.1.output.dense.weight").run()
    app.checkbox(key="het_log_y").check().run()
    assert not app.exception and not messages(app, "error")
    assert "TADrop drops" in app.caption[-1].value


def test_a_merge_run_adds_rows_with_and_without_the_sparsifier(family_source):
    app = open_app(family_source, "merge")
    app.button(key="merge_run").click().run()
    assert not app.exception and not messages(app, "error")
    overview = app.dataframe[0].value
    assert list(overview["run"]) == ["#1 emr + tadrop (a=0.5, b=0.95)", "#2 emr"]
    assert overview["sparsity"].iloc[0] > 0.0 and overview["sparsity"].iloc[1] == 0.0
    app.selectbox(key="merge_method").set_value("task_arithmetic").run()
    app.checkbox(key="merge_compare").uncheck().run()
    app.button(key="merge_run").click().run()
    assert len(app.dataframe[0].value) == 3


@pytest.mark.parametrize(
    ("method", "sparsifier"),
    [(method, "none") for method in registry.method_names()]
    + [("task_arithmetic", name) for name in registry.sparsifier_names() if name != "none"],
)
def test_every_method_and_sparsifier_runs_from_the_page(family_source, method, sparsifier):
    app = open_app(family_source, "merge")
    app.selectbox(key="merge_method").set_value(method).run()
    app.selectbox(key="merge_sparsifier").set_value(sparsifier).run()
    app.button(key="merge_run").click().run()
    assert not app.exception and not messages(app, "error")
    run = app.session_state["runs"][0]  # then the same method without the sparsifier
    assert run.method == method and run.result is not None
    # "none" means the method's own default: a preset's sparsifier, TIES's magnitude trim
    defaults = {"ties": "magnitude"} | {
        name: preset.sparsifier for name, preset in registry.PRESETS.items()
    }
    assert run.sparsifier == (sparsifier if sparsifier != "none" else defaults.get(method, "none"))


def test_a_bad_parameter_is_an_error_message_and_the_app_goes_on(family_source):
    app = open_app(family_source, "merge")
    app.selectbox(key="merge_sparsifier").set_value("dare").run()
    app.number_input(key="merge_s_DARE_p").set_value(1.5).run()
    app.button(key="merge_run").click().run()
    assert not app.exception
    assert any("p=1.5 is outside" in text for text in messages(app, "error"))
    app.number_input(key="merge_s_DARE_p").set_value(0.5).run()
    app.button(key="merge_run").click().run()
    assert len(app.dataframe[0].value) == 2


def test_a_cancelled_merge_is_reported_and_not_kept(family_source):
    app = open_app(family_source, "merge")
    app.session_state["merge_cancelled"] = True
    app.session_state["merge_running"] = True
    app.run()
    assert any("Cancelled" in text for text in messages(app, "warning"))
    assert any("No run yet" in text for text in messages(app, "info"))


def test_sweep_and_grid_fill_their_figures(family_source):
    app = open_app(family_source, "merge")
    app.multiselect(key="sweep_sparsifiers").set_value(["tadrop", "magnitude"]).run()
    app.text_input(key="sweep_targets").set_value("0.5").run()
    app.button(key="sweep_run").click().run()
    points = app.session_state["sweep_points"]
    assert list(points["sparsifier"]) == ["tadrop", "magnitude", "none"]
    assert points["sparsity"].iloc[:2].tolist() == pytest.approx([0.5, 0.5], abs=0.01)
    app.radio(key="merge_sweep_section").set_value("(a, b) sensitivity (Table 7)").run()
    app.text_input(key="grid_as").set_value("0.4, 0.5").run()
    app.text_input(key="grid_bs").set_value("0.45, 0.9").run()
    app.button(key="grid_run").click().run()
    grid = app.session_state["grid_points"]
    assert sorted(zip(grid["a"], grid["b"], strict=True)) == [(0.4, 0.45), (0.4, 0.9), (0.5, 0.9)]
    assert not app.exception and not messages(app, "error")


def test_export_writes_the_model_and_a_config_the_cli_accepts(family_source, data_root):
    app = open_app(family_source, "merge")
    app.checkbox(key="merge_compare").uncheck().run()
    app.button(key="merge_run").click().run()
    app.switch_page("views/export.py").run()
    app.text_input(key="export_dir").set_value("out/model").run()
    app.button(key="export_write").click().run()
    assert not app.exception and not messages(app, "error")
    written = data_root / "out" / "model"
    assert sorted(path.name for path in written.iterdir()) == ["task0", "task1", "task2"]
    assert (written / "task0" / "model.safetensors").is_file()
    config = yaml.safe_load(app.code[-1].value)
    assert config["method"] == "emr" and config["sparsifier"] == "tadrop"
    assert validate_config(config, folder=data_root).method == "emr"


def test_export_writes_emrs_compact_artifact(family_source, data_root):
    app = open_app(family_source, "merge")
    app.checkbox(key="merge_compare").uncheck().run()
    app.button(key="merge_run").click().run()
    app.switch_page("views/export.py").run()
    app.radio(key="export_layout").set_value(
        "Compact artifact (unified vector, bit masks, rescalers)"
    ).run()
    app.text_input(key="export_dir").set_value("out/compact").run()
    app.button(key="export_write").click().run()
    assert not app.exception and not messages(app, "error")
    written = data_root / "out" / "compact"
    assert [path.name for path in written.iterdir()] == ["emr_artifact"]
    assert (written / "emr_artifact" / "manifest.json").is_file()
    assert any("compact artifact is" in text for text in messages(app, "info"))


def test_export_refuses_a_folder_outside_the_root(family_source):
    app = open_app(family_source, "merge")
    app.button(key="merge_run").click().run()
    app.switch_page("views/export.py").run()
    app.text_input(key="export_dir").set_value("/tmp/elsewhere").run()
    assert any("outside the data root" in text for text in messages(app, "error"))
    assert not app.get("button") or "export_write" not in [b.key for b in app.button]


def test_two_sessions_do_not_share_runs_or_settings(family_source):
    first = open_app(family_source, "merge")
    second = open_app(family_source, "merge")
    first.button(key="merge_run").click().run()
    first.switch_page("views/landscape.py").run()
    first.slider(key="slider_b").set_value(0.8).run()
    second.run()
    assert len(first.session_state["runs"]) == 2
    assert second.session_state["runs"] == []
    second.switch_page("views/landscape.py").run()
    assert second.slider(key="slider_b").value == 0.95


def test_no_legacy_pages_folder_next_to_the_app():
    """Issue 15 bug 5: a `pages/` folder beside app.py makes Streamlit start every session in
    its legacy multipage mode (sidebar of file names, blank page) until `st.navigation` runs.
    Streamlit decides this from the folder alone (`PagesManager.uses_pages_directory`)."""
    from streamlit.runtime.pages_manager import PagesManager

    assert not (Path(APP).parent / "pages").exists()
    saved = PagesManager.uses_pages_directory
    PagesManager.uses_pages_directory = None  # the class caches the first app's answer
    try:
        PagesManager(APP)
        assert PagesManager.uses_pages_directory is False
    finally:
        PagesManager.uses_pages_directory = saved


def test_every_page_of_the_navigation_exists():
    import re

    listed = re.findall(r'st\.Page\("([^"]+)"', Path(APP).read_text())
    assert len(listed) == len(PAGES)
    assert all((Path(APP).parent / page).is_file() for page in listed)


def test_base_picker_offers_merged_outputs_only_when_asked_and_labelled(data_root):
    """Issue 15 bug 7: merged outputs are not offered as models unless asked, then labelled."""
    base, tasks = write_family(data_root / "family", tasks=2)
    merged = data_root / "merged" / "model.safetensors"
    merged.parent.mkdir()
    save_file(
        {"encoder.layer.0.weight": torch.zeros(2, 2)},
        str(merged),
        metadata={"method": "ties", "input_paths": "[]"},
    )
    app = open_app()
    app.radio(key="models_choice").set_value("My checkpoints").run()

    def base_options() -> list[str]:
        return next(box for box in app.selectbox if box.label == "Base checkpoint").options

    assert "family/base" in base_options()
    assert not any("merged" in option for option in base_options())
    app.checkbox(key="models_include_merged").check().run()
    assert "[merged] merged" in base_options()


def test_compare_runs_follows_new_runs(family_source):
    """Issue 15 bug 1: after a third merge the comparison shows the newest runs, not the first."""
    app = open_app(family_source, "merge")
    app.button(key="merge_run").click().run()  # #1 emr + tadrop, #2 emr
    app.selectbox(key="merge_method").set_value("ties").run()
    app.button(key="merge_run").click().run()  # #3 ties + tadrop, #4 ties
    (compare,) = [widget for widget in app.multiselect if widget.label == "Compare runs"]
    assert [label.split()[0] for label in compare.value] == ["#3", "#4"]


def test_export_defaults_to_the_run_asked_for_not_its_baseline(family_source):
    """Issue 15 bug 2: with "Also run without the sparsifier", Export and its YAML default to
    the run with the sparsifier, not the baseline run made beside it."""
    app = open_app(family_source, "merge")
    app.button(key="merge_run").click().run()  # #1 emr + tadrop, #2 emr (the baseline)
    app.switch_page("views/export.py").run()
    assert app.selectbox(key="export_run").value.startswith("#1 emr + tadrop")
    assert app.selectbox(key="export_config_run").value.startswith("#1 emr + tadrop")
    assert yaml.safe_load(app.code[-1].value)["sparsifier"] == "tadrop"


def test_typing_in_the_grid_keeps_the_grid_section_open(family_source):
    """Issue 15 bug 3: editing the (a, b) grid right after a merge stays on the grid section."""
    app = open_app(family_source, "merge")
    app.radio(key="merge_sweep_section").set_value("(a, b) sensitivity (Table 7)").run()
    app.button(key="merge_run").click().run()
    app.text_input(key="grid_as").set_value("0.4").run()
    assert app.radio(key="merge_sweep_section").value == "(a, b) sensitivity (Table 7)"
    assert app.text_input(key="grid_as").value == "0.4"

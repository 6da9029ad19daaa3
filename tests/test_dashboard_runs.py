"""Run records, sweeps and export files of the dashboard, without streamlit."""

from __future__ import annotations

import io
import zipfile

import pandas as pd
import plotly.graph_objects as go
import pytest
import yaml
from family_fixtures import write_family

from dashboard import exports, png, runs, sweeps
from dashboard.sources import FamilySource, open_family
from tadrop.config import validate_config
from tadrop.stats import compute_stats


@pytest.fixture
def family_source(tmp_path) -> FamilySource:
    base, tasks = write_family(tmp_path / "family", tasks=2)
    return FamilySource(
        label="synthetic",
        base=str(base),
        finetuned=tuple(str(path) for path in tasks.values()),
        task_names=tuple(tasks),
    )


def merge(family, source, number=1, method="ties", sparsifier="tadrop", params=None):
    return runs.execute_merge(
        family,
        number=number,
        method=method,
        sparsifier=sparsifier,
        method_params={},
        sparsifier_params=params or {},
        family_label=source.label,
        family_key=source.key,
        device="cpu",
    )


def test_a_record_names_itself_and_keeps_the_built_parameters(family_source):
    family = open_family(family_source)
    record = merge(family, family_source, params={"a": 0.4})
    assert record.label == "#1 ties + tadrop (a=0.4, b=0.95)"
    assert record.sparsifier_params["a"] == 0.4 and record.sparsifier_params["rescale"] == "l2"
    assert record.method_params["scaling"] == 1.0
    assert 0.0 < record.mean_sparsity < 1.0
    default_trim = merge(family, family_source, number=2, sparsifier="none")
    assert default_trim.sparsifier == "magnitude"  # TIES trims by default
    assert default_trim.sparsifier_params["scope"] == "global"


def test_only_the_newest_runs_keep_their_merged_model(family_source):
    family = open_family(family_source)
    records = [merge(family, family_source, number=n, sparsifier="none") for n in (1, 2, 3)]
    runs.forget_old_models(records, keep=2)
    assert [record.result is not None for record in records] == [False, True, True]


def test_results_of_runs_are_stacked_with_their_labels():
    first = runs.RunRecord(1, "emr", "tadrop", {}, {"a": 0.5, "b": 0.95}, "f", "k", {}, 1.0)
    second = runs.RunRecord(2, "emr", "none", {}, {}, "f", "k", {}, 1.0)
    table = pd.DataFrame({"task": ["x"], "metric": ["accuracy"], "merged": [0.5]})
    first.results, second.results = table, table.assign(merged=0.4)
    stacked = runs.results_table([first, second])
    assert list(stacked["run"]) == ["#1 emr + tadrop (a=0.5, b=0.95)", "#2 emr"]
    assert list(stacked["merged"]) == [0.5, 0.4]
    assert runs.results_table([runs.RunRecord(3, "emr", "none", {}, {}, "f", "k", {}, 0.1)]).empty


def test_parse_numbers_reads_commas_and_spaces_and_names_a_bad_entry():
    assert sweeps.parse_numbers("0.1, 0.5 0.9") == [0.1, 0.5, 0.9]
    with pytest.raises(ValueError, match="'x' is not a number"):
        sweeps.parse_numbers("0.1, x")
    with pytest.raises(ValueError, match="at least one"):
        sweeps.parse_numbers(" , ")


def test_a_sweep_reports_the_realised_sparsity_of_each_point(family_source):
    family = open_family(family_source)
    seen = []
    table = sweeps.sweep(
        family,
        family_source,
        method="task_arithmetic",
        method_params={},
        sparsifiers=["magnitude", "dare"],
        targets=[0.25, 0.75],
        eps=1e-12,
        evaluator=None,
        device="cpu",
        progress=lambda done, total, text: seen.append(done / total),
    )
    assert list(table["sparsifier"]) == ["magnitude"] * 2 + ["dare"] * 2 + ["none"]
    assert list(table["target"]) == [0.25, 0.75, 0.25, 0.75, 0.0]
    assert table["sparsity"].iloc[:2].tolist() == pytest.approx([0.25, 0.75], abs=0.01)
    assert table["sparsity"].iloc[-1] == 0.0  # task arithmetic without a sparsifier
    assert table["score_kind"].unique().tolist() == ["mean cosine (data-free)"]
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_the_grid_skips_pairs_with_a_not_below_b(family_source):
    family = open_family(family_source)
    with pytest.raises(ValueError, match="a < b"):
        sweeps.sensitivity_grid(
            family, family_source, method="emr", method_params={}, a_values=[0.9],
            b_values=[0.5], eps=1e-12, evaluator=None, device="cpu",
        )  # fmt: skip


def test_the_run_config_is_valid_for_the_cli(family_source, tmp_path):
    family = open_family(family_source)
    record = merge(family, family_source)
    task_paths = {task: str(checkpoint.source) for task, checkpoint in family.tasks.items()}
    config = exports.run_config(
        record, family_source, task_paths, output=tmp_path / "out", folder=tmp_path
    )
    text = exports.config_yaml(config)
    loaded = validate_config(yaml.safe_load(text), folder=tmp_path)
    assert loaded.method == "ties" and loaded.sparsifier == "tadrop"
    assert loaded.sparsifier_params["a"] == 0.5
    assert set(loaded.models) == {"task0", "task1"}


def test_figure_files_open_offline_and_zip(tmp_path):
    figure = go.Figure(go.Bar(x=[1, 2], y=[3, 4]))
    before = figure.to_json()
    files = exports.figure_files({"bars": figure}, png=False)
    assert set(files) == {"plotly.min.js", "bars.html"}
    assert b'src="plotly.min.js"' in files["bars.html"]
    assert b'"plot_bgcolor":"white"' in files["bars.html"]  # the export template
    assert figure.to_json() == before  # the figure shown in the app is not restyled
    with zipfile.ZipFile(io.BytesIO(exports.zip_bytes(files))) as archive:
        assert sorted(archive.namelist()) == ["bars.html", "plotly.min.js"]
    written = exports.write_files(files, tmp_path / "figures")
    assert sorted(path.name for path in written) == ["bars.html", "plotly.min.js"]


@pytest.mark.skipif(png.png_renderer_problem() is not None, reason="no Chromium to render PNG")
def test_png_export_renders_a_real_image():
    (image,) = png.figures_to_png({"bars": go.Figure(go.Bar(x=[1], y=[1]))}, scale=1).values()
    assert image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 1000


def test_statistics_bytes_are_the_librarys_files(family_source):
    table = compute_stats(open_family(family_source))
    csv = exports.statistics_bytes(table, ".csv").decode()
    assert csv.splitlines()[0].startswith("task,tensor,layer,kind")
    assert "sketch" not in csv.splitlines()[0]
    assert exports.statistics_bytes(table, ".parquet")[:4] == b"PAR1"

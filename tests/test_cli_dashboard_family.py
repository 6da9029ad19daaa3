"""`tadrop dashboard --family PATH`: a merge config, a family-only YAML or a base/ + task
folders layout opens that family on every dashboard page; a bad path is refused before any
server starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from family_fixtures import write_family
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from dashboard.sources import command_line_family
from tadrop.cli import main
from tadrop.cli.output import EXIT_USAGE
from tadrop.config import ConfigError
from tadrop.config.family import ENV_FAMILY, read_family_spec

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


@pytest.fixture
def family_dir(tmp_path) -> Path:
    write_family(tmp_path / "fam", tasks=2)
    return tmp_path / "fam"


def test_a_folder_layout_names_tasks_after_their_folders(family_dir):
    (family_dir / "notes.txt").write_text("not a task")
    (family_dir / ".hidden").mkdir()
    spec = read_family_spec(family_dir)
    assert spec.base == family_dir / "base"
    assert spec.tasks == {"task0": family_dir / "task0", "task1": family_dir / "task1"}
    assert spec.label == "fam"


def test_a_merge_config_gives_its_models_and_key_options(family_dir):
    config = family_dir.parent / "ties.yaml"
    config.write_text(yaml.safe_dump({
        "name": "mine", "base": "fam/base", "models": {"a": "fam/task1", "b": "fam/task0"},
        "method": "ties", "exclude": "position_ids", "keys": "common",
    }))  # fmt: skip
    spec = read_family_spec(config)
    assert spec.label == "mine"
    assert spec.tasks == {"a": family_dir / "task1", "b": family_dir / "task0"}
    assert (spec.exclude, spec.keys) == ("position_ids", "common")


def test_a_family_only_yaml_needs_no_method(family_dir):
    config = family_dir / "family.yaml"
    config.write_text(yaml.safe_dump({"base": "base", "models": ["task0", "task1"]}))
    assert list(read_family_spec(config).tasks) == ["task0", "task1"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"demo": {"zoo": "text"}, "method": "ties"}, "without --family"),
        ({"base": "base"}, "models: is required"),
        ({"base": "base", "models": ["nowhere"]}, "does not exist"),
    ],
)
def test_a_yaml_that_names_no_family_is_refused(family_dir, content, message):
    config = family_dir / "bad.yaml"
    config.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError, match=message):
        read_family_spec(config)


def test_a_folder_without_base_or_tasks_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no base/ folder"):
        read_family_spec(tmp_path)
    (tmp_path / "base").mkdir()
    with pytest.raises(ConfigError, match="one folder per fine-tuned task"):
        read_family_spec(tmp_path)
    with pytest.raises(ConfigError, match="no such file or folder"):
        read_family_spec(tmp_path / "missing.yaml")


def test_the_app_reads_the_family_from_its_arguments_or_the_environment(family_dir):
    from_argv = command_line_family(["--data-root", "x", "--family", str(family_dir)], {})
    assert from_argv.task_names == ("task0", "task1")
    from_env = command_line_family([], {ENV_FAMILY: str(family_dir)})
    assert from_env == from_argv
    assert command_line_family(["--fam", "x"], {}) is None  # no abbreviations


@pytest.mark.parametrize(
    ("layout", "problem"),
    [("missing", "no such file or folder"), ("mismatch", "task0")],
)
def test_the_cli_refuses_a_bad_family_before_starting_a_server(
    family_dir, capsys, monkeypatch, layout, problem
):
    def no_server(args, console):
        raise AssertionError("a server was started for a bad family")

    monkeypatch.setattr("tadrop.cli.demo.command_dashboard", no_server)
    if layout == "mismatch":  # a task without most of the base's tensors
        save_file({"lonely": torch.zeros(3)}, str(family_dir / "task0" / "model.safetensors"))
        path = family_dir
    else:
        path = family_dir / "missing"
    assert main(["dashboard", "--family", str(path)]) == EXIT_USAGE
    assert problem in capsys.readouterr().err


def test_the_dashboard_opens_the_command_line_family_on_every_page(
    family_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("TADROP_DATA_ROOT", str(tmp_path / "elsewhere"))  # not under a root
    monkeypatch.setenv("TADROP_HOME", str(tmp_path / "no_demo_here"))
    monkeypatch.setenv(ENV_FAMILY, str(family_dir))
    (tmp_path / "elsewhere").mkdir()
    app = AppTest.from_file(APP, default_timeout=60)
    app.session_state["demo_build_tried"] = True
    app.run()
    assert not app.exception and not app.error
    assert app.subheader[0].value == "Loaded: fam"
    assert {metric.label: metric.value for metric in app.metric}["Tasks"] == "2"
    app.switch_page("views/heterogeneity.py").run()
    assert not app.exception and not app.error
    assert not any("No model family is loaded" in info.value for info in app.info)


def test_the_server_imports_the_pages_dependencies_before_it_answers():
    from tadrop.cli.demo import dashboard_command

    command, _ = dashboard_command(None, None)
    assert Path(command[1]).name == "serve.py" and command[2:4] == ["run", APP]
    # serve.py is streamlit's own command line: `version` prints streamlit's version.
    loaded = subprocess.run([sys.executable, command[1], "version"], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert "Streamlit, version" in loaded.stdout
    check = (
        f"import runpy, sys; runpy.run_path({command[1]!r}, run_name='serve')['preload']();"
        "print(sorted(m for m in ('torch', 'tadrop.stats', 'plotly', 'dashboard.state') "
        "if m in sys.modules))"
    )
    modules = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert modules.stdout.split() == ["['plotly',", "'tadrop.stats',", "'torch']"]

"""Run configs: every problem is one message with file:line, the key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from tadrop.config import ConfigError, expand_path, load_config, parse_size
from tests.family_fixtures import write_family


@pytest.fixture
def family_dir(tmp_path: Path) -> Path:
    write_family(tmp_path / "models", tasks=2)
    return tmp_path


def write_config(folder: Path, text: str, name: str = "run.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


VALID = """\
base: models/base
models:
  task0: models/task0
  task1: models/task1
method: ties
sparsifier: tadrop
sparsifier_params: {a: 0.45, b: 0.9}
output:
  path: merged
"""


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


def test_valid_config_resolves_paths_relative_to_its_folder(family_dir: Path) -> None:
    config = load_config(write_config(family_dir, VALID))
    assert config.base == family_dir / "models" / "base"
    assert config.models == {
        "task0": family_dir / "models/task0",
        "task1": family_dir / "models/task1",
    }
    assert config.output.path == family_dir / "merged"
    assert config.output.dtype == "auto" and config.output.max_shard_size == 5 * 2**30
    method, sparsifier = config.build()
    assert type(method).__name__ == "TIES" and sparsifier.a == 0.45 and sparsifier.b == 0.9


def test_unknown_key_names_line_and_allowed_keys(family_dir: Path) -> None:
    message = error_of(write_config(family_dir, VALID + "  dtyp: float16\n"))
    assert "run.yaml:10: output.dtyp: unknown key 'dtyp'" in message
    assert "path, dtype, max_shard_size, overwrite" in message


def test_unknown_method_lists_known_methods(family_dir: Path) -> None:
    message = error_of(write_config(family_dir, VALID.replace("method: ties", "method: tiez")))
    assert "run.yaml:5: method: unknown merge method 'tiez'" in message
    assert "task_arithmetic" in message and "dare_ties" in message


def test_wrong_type_of_a_parameter(family_dir: Path) -> None:
    message = error_of(write_config(family_dir, VALID.replace("a: 0.45", "a: high")))
    assert "run.yaml:7: sparsifier_params.a: expected a number (default 0.5), got 'high'" in message


def test_unknown_parameter_lists_parameters_with_defaults(family_dir: Path) -> None:
    message = error_of(write_config(family_dir, VALID.replace("a: 0.45", "alpha: 0.45")))
    assert "sparsifier 'tadrop' has no parameter 'alpha'" in message
    assert "a (default 0.5)" in message and "rescale (default 'l2')" in message


def test_value_out_of_range_uses_the_class_rule(family_dir: Path) -> None:
    message = error_of(write_config(family_dir, VALID.replace("b: 0.9", "b: 1.5")))
    assert "run.yaml:7:" in message and "0 < a < b < 1" in message


def test_choice_out_of_allowed_values(family_dir: Path) -> None:
    text = VALID.replace("{a: 0.45, b: 0.9}", "\n  rescale: l3")
    message = error_of(write_config(family_dir, text))
    assert "run.yaml:8: sparsifier_params.rescale:" in message and "'inverse'" in message


def test_missing_path_is_reported_before_reading(family_dir: Path) -> None:
    message = error_of(write_config(family_dir, VALID.replace("models/task1", "models/taskX")))
    assert "run.yaml:4: models.task1: path 'models/taskX' does not exist" in message


def test_template_allows_placeholder_paths(family_dir: Path) -> None:
    text = "template: true\n" + VALID.replace("models/task1", "/path/to/your/model")
    config = load_config(write_config(family_dir, text))
    assert config.template and config.models["task1"] == Path("/path/to/your/model")


def test_several_problems_in_one_message(family_dir: Path) -> None:
    text = VALID.replace("models/base", "nothing").replace(
        "path: merged", "path: merged\n  colour: red"
    )
    message = error_of(write_config(family_dir, text))
    assert "2 problems" in message and ":1: base:" in message and "colour" in message


def test_demo_block_or_models_not_both(family_dir: Path) -> None:
    message = error_of(write_config(family_dir, VALID + "demo: {zoo: text}\n"))
    assert "either demo" in message
    message = error_of(write_config(family_dir, "demo: {zoo: txt}\nmethod: ties\n"))
    assert "run.yaml:1: demo.zoo: Input should be 'text' or 'image'; got 'txt'" in message


def test_missing_source_and_method(family_dir: Path) -> None:
    assert "method: is required but missing" in error_of(
        write_config(family_dir, "demo: {zoo: text}\n")
    )
    assert "base: is required" in error_of(write_config(family_dir, "method: ties\n"))


def test_yaml_syntax_error_and_duplicate_key(family_dir: Path) -> None:
    assert "run.yaml:2: not valid YAML" in error_of(
        write_config(family_dir, "method: ties\n  bad: [\n")
    )
    assert "run.yaml:2: key method is given twice" in error_of(
        write_config(family_dir, "method: ties\nmethod: emr\n")
    )
    assert "top level must be a mapping" in error_of(write_config(family_dir, "- a\n- b\n"))


def test_list_of_models_named_by_folder(family_dir: Path) -> None:
    text = VALID.replace(
        "  task0: models/task0\n  task1: models/task1", "  - models/task0\n  - models/task1/"
    )
    config = load_config(write_config(family_dir, text))
    assert list(config.models) == ["task0", "task1"]


def test_sweep_grid_is_the_cartesian_product(family_dir: Path) -> None:
    text = (
        VALID
        + "sweep:\n  sparsifier_params: {a: [0.45, 0.5], b: [0.8, 0.9]}\n  method_params: {scaling: [1.0]}\n"
    )
    grid = load_config(write_config(family_dir, text)).grid()
    assert [label for label, _, _ in grid] == [
        "scaling=1.0,a=0.45,b=0.8",
        "scaling=1.0,a=0.45,b=0.9",
        "scaling=1.0,a=0.5,b=0.8",
        "scaling=1.0,a=0.5,b=0.9",
    ]
    assert grid[2][2] == {"a": 0.5, "b": 0.8}


def test_sweep_point_out_of_range(family_dir: Path) -> None:
    text = VALID + "sweep:\n  sparsifier_params: {a: [0.45, 0.95]}\n"
    message = error_of(write_config(family_dir, text))
    assert "0 < a < b < 1" in message and "sweep point a=0.95" in message


def test_preset_uses_its_sparsifier_and_rejects_orphan_params(family_dir: Path) -> None:
    config = load_config(
        write_config(
            family_dir,
            VALID.replace(
                "method: ties\nsparsifier: tadrop\n", "method: dare_ties\nsparsifier: none\n"
            ).replace("{a: 0.45, b: 0.9}", "{p: 0.5}"),
        )
    )
    assert config.merge_spec() == ("ties", "dare")
    text = VALID.replace("sparsifier: tadrop\n", "")
    assert "given but no sparsifier is chosen" in error_of(write_config(family_dir, text))


def test_expand_path_home_variables_and_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TADROP_HOME", str(tmp_path / "home"))
    assert expand_path("${TADROP_HOME}/zoo", Path("/x")) == tmp_path / "home" / "zoo"
    assert expand_path("~/m", Path("/x")) == Path.home() / "m"
    assert expand_path("rel/m", Path("/x")) == Path("/x/rel/m")
    with pytest.raises(ValueError, match="NOT_SET_ANYWHERE"):
        expand_path("${NOT_SET_ANYWHERE}/m", Path("/x"))


@pytest.mark.parametrize(
    ("text", "size"), [("5GB", 5 * 10**9), ("2GiB", 2 * 2**30), ("500 MB", 5 * 10**8), (1024, 1024)]
)
def test_parse_size(text, size) -> None:
    assert parse_size(text) == size


def test_bad_shard_size_and_device(family_dir: Path) -> None:
    message = error_of(write_config(family_dir, VALID + "  max_shard_size: lots\n"))
    assert "run.yaml:10: output.max_shard_size: 'lots' is not a size" in message
    message = error_of(write_config(family_dir, VALID + "device: gpu\n"))
    assert "run.yaml:10: device: unknown device 'gpu'; allowed: auto, cpu" in message


def test_method_without_parameters_accepts_none(family_dir: Path) -> None:
    text = VALID.replace("method: ties", "method: averaging").replace(
        "sparsifier_params: {a: 0.45, b: 0.9}\n", "method_params: {args: 1}\n"
    )
    assert "merge method 'averaging' has no parameter 'args'; allowed: none" in error_of(
        write_config(family_dir, text)
    )


SAMPLES = sorted((Path(__file__).parent.parent / "sample_configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SAMPLES, ids=[path.stem for path in SAMPLES])
def test_every_sample_config_is_valid(path: Path) -> None:
    config = load_config(path)
    placeholders = config.demo is None and not (config.base and config.base.exists())
    assert config.template == placeholders, (
        "only files marked `template: true` may hold placeholder paths"
    )
    method, sparsifier = config.build()
    assert method is not None
    assert config.demo is not None or config.template


def test_sample_configs_cover_every_method_with_and_without_tadrop() -> None:
    configs = [load_config(path) for path in SAMPLES]
    demo_specs = {config.merge_spec() for config in configs if config.demo is not None}
    for method in ("averaging", "task_arithmetic", "ties", "emr"):
        assert (method, None) in demo_specs and (method, "tadrop") in demo_specs, method
    assert {config.method for config in configs} >= {"dare_ties", "dare_linear", "della"}
    assert any(config.sweep for config in configs)
    assert sum(config.template for config in configs) == 2

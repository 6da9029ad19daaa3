"""The demo's heterogeneity numbers (hand-computed on a tiny family) and the synthetic family."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch

from tadrop.experiments.heterogeneity import family_heterogeneity
from tadrop.experiments.zoo_numbers import family_numbers
from tadrop.io import open_checkpoint
from tadrop.task_vectors import load_family
from tadrop.zoo import synthetic
from tadrop.zoo.errors import CorruptZooError

N = 2048  # entries of each large tensor: at least MIN_NUMEL = 1024
SHAPE = (32, 64)


def _sixty_forty() -> torch.Tensor:
    """60% of |tau| = 1, 40% = 10: Q_0.5 = 1, Q_0.95 = 10, d = 0.1."""
    values = torch.ones(N)
    values[: int(0.4 * N)] = 10.0
    return values.reshape(SHAPE)


def _ramp() -> torch.Tensor:
    """|tau| = 1, 2, ..., N: Q_q = 1 + q (N - 1), d = 1024.5 / 1945.65."""
    return -torch.arange(1.0, N + 1).reshape(SHAPE)


def _write(folder, tensors) -> None:
    folder.mkdir(parents=True)
    safetensors.torch.save_file(tensors, str(folder / "model.safetensors"))


@pytest.fixture
def tiny_family(tmp_path):
    names = {
        "q": "model.layers.0.self_attn.q_proj.weight",
        "up": "model.layers.0.mlp.up_proj.weight",
        "down": "model.layers.0.mlp.down_proj.weight",
        "norm": "model.layers.0.input_layernorm.weight",  # 64 entries: too small to count
        "embed": "model.embed_tokens.weight",  # mostly zeros: not moved, not counted
    }
    base = {name: torch.zeros(SHAPE) for name in names.values()}
    base[names["norm"]] = torch.ones(64)
    mostly_zero = torch.zeros(SHAPE)
    mostly_zero[0] = 1.0
    task = {
        names["q"]: _sixty_forty(),
        names["up"]: torch.full(SHAPE, 0.5),  # constant |tau|: d = 1
        names["down"]: _ramp(),
        names["norm"]: torch.linspace(0.5, 2, 64),
        names["embed"]: mostly_zero,
    }
    _write(tmp_path / "base", base)
    _write(tmp_path / "one", task)
    return load_family(tmp_path / "base", {"one": tmp_path / "one"})


def test_heterogeneity_matches_hand_computed_percentiles(tiny_family):
    summary = family_heterogeneity(tiny_family)
    one = summary["tasks"]["one"]
    d_ramp = (1 + 0.5 * (N - 1)) / (1 + 0.95 * (N - 1))
    # d of the three counted tensors, sorted: 0.1 (q), d_ramp (down), 1.0 (up); numpy's
    # linear percentiles: p10 at position 0.2, p90 at position 1.8.
    p10 = 0.1 + 0.2 * (d_ramp - 0.1)
    p90 = d_ramp + 0.8 * (1.0 - d_ramp)
    assert one["tensors"] == 3
    assert one["p10"] == pytest.approx(p10, abs=1e-4)
    assert one["p90"] == pytest.approx(p90, abs=1e-4)
    assert one["spread"] == pytest.approx(p90 - p10, abs=1e-4)
    assert one["by_kind"] == pytest.approx(
        {"attn.q": 0.1, "mlp.down": d_ramp, "mlp.up": 1.0}, abs=1e-4
    )
    assert summary["tasks_reaching_target"] == 1  # spread 0.72 >= 0.3


@pytest.fixture(scope="module")
def synthetic_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("synthetic_home")
    synthetic.build_synthetic(home, measure=family_numbers)
    return home


def test_synthetic_family_is_labelled_and_loads_as_a_family(synthetic_home):
    family = synthetic.load_synthetic(synthetic_home)
    assert family.manifest["synthetic"] is True and "SYNTHETIC" in family.manifest["description"]
    assert family.tasks == list(synthetic.TASKS)
    opened = load_family(family.base_dir, family.task_dirs)
    assert len(opened.tensor_names) == len(synthetic.tensor_shapes())
    assert json.loads((family.base_dir / "config.json").read_text())["model_type"] == "llama"


def test_synthetic_tasks_use_every_distribution_and_differ_by_component(synthetic_home):
    family = synthetic.load_synthetic(synthetic_home)
    heterogeneity = family.manifest["heterogeneity"]
    for task, record in family.manifest["tasks"].items():
        assert set(record["distributions"].values()) == set(synthetic.DISTRIBUTIONS)
        by_kind = heterogeneity["tasks"][task]["by_kind"]
        sparse = [k for k, dist in record["distributions"].items() if dist == "sparse"]
        quantized = [k for k, dist in record["distributions"].items() if dist == "quantized"]
        # near-sparse deltas: d near 0; uniform rounding errors: d = 0.5 / 0.95
        assert all(by_kind[k] < 0.02 for k in sparse if k in by_kind), (task, by_kind)
        assert all(by_kind[k] == pytest.approx(0.526, abs=0.02) for k in quantized if k in by_kind)
        assert heterogeneity["tasks"][task]["spread"] >= 0.3
    kinds = [r["distributions"]["attn.q"] for r in family.manifest["tasks"].values()]
    assert len(set(kinds)) == len(kinds)  # no two tasks agree on a component


def test_synthetic_family_is_the_same_for_a_seed_and_rebuilt_when_damaged(synthetic_home, tmp_path):
    again = synthetic.build_synthetic(tmp_path)
    name = "model.layers.1.mlp.up_proj.weight"
    first = open_checkpoint(synthetic.load_synthetic(synthetic_home).task_dirs["task_b"]).get(name)
    second = open_checkpoint(again / "tasks" / "task_b").get(name)
    assert torch.equal(first, second)

    (again / "tasks" / "task_a" / "model.safetensors").write_bytes(b"broken")
    assert not synthetic.synthetic_is_built(tmp_path)
    with pytest.raises(CorruptZooError, match="task_a/model.safetensors"):
        synthetic.load_synthetic(tmp_path)
    synthetic.build_synthetic(tmp_path)
    assert synthetic.synthetic_is_built(tmp_path)


def test_unknown_delta_distribution_is_refused():
    with pytest.raises(ValueError, match="choose one of"):
        synthetic.sample_delta("cauchy", (4,), 1.0, torch.Generator())


def test_zoo_command_shows_the_synthetic_family_and_refuses_bad_threads(synthetic_home, capsys):
    from tadrop.zoo.__main__ import main

    assert main(["show", "--zoo", "synthetic", "--home", str(synthetic_home)]) == 0
    shown = capsys.readouterr().out
    assert "SYNTHETIC" in shown and "task_a: spread of d 0.52" in shown
    assert main(["build", "--zoo", "text", "--threads", "0", "--home", str(synthetic_home)]) == 2
    assert "threads=0" in capsys.readouterr().err

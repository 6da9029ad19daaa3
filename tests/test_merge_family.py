"""run_merge over a family agrees with the pure functions; global scope; results saved; cancel."""

import threading

import pytest
import torch
from family_fixtures import write_family
from safetensors.torch import load_file

from tadrop.io import open_checkpoint
from tadrop.merge import (
    EMR,
    TIES,
    MergeCancelled,
    TaskArithmetic,
    WeightAveraging,
    emr_merge,
    run_merge,
    ties_merge,
)
from tadrop.registry import build_merge, method_names
from tadrop.sparsify import DARE, Magnitude, TADrop, sparsify
from tadrop.task_vectors import load_family


@pytest.fixture
def family(tmp_path):
    base_dir, task_dirs = write_family(tmp_path)
    return load_family(base_dir, task_dirs)


def _states(family):
    base = {name: family.base.get(name).float() for name in family.tensor_names}
    taus = [
        {
            name: family.get_task_tensor(task, name).float() - base[name]
            for name in family.tensor_names
        }
        for task in family.task_names
    ]
    return base, taus


def test_task_arithmetic_family(family):
    base, taus = _states(family)
    result = run_merge(family, TaskArithmetic(scaling=0.4), device="cpu")
    for name in family.tensor_names:
        torch.testing.assert_close(
            result.merged[name], base[name] + 0.4 * sum(tau[name] for tau in taus)
        )
    state = result.model_for()
    assert state["embeddings.position_ids"].dtype == torch.int64  # untouched buffer from the base


def test_averaging_equals_mean_of_models(family):
    result = run_merge(family, WeightAveraging(), device="cpu")
    name = family.tensor_names[0]
    mean = torch.stack([family.get_task_tensor(t, name) for t in family.task_names]).mean(0)
    torch.testing.assert_close(result.merged[name], mean)


def test_ties_per_tensor_matches_pure_function(family):
    base, taus = _states(family)
    trim = Magnitude(density=0.3, scope="tensor")
    result = run_merge(family, TIES(scaling=0.8), trim, device="cpu")
    for name in family.tensor_names:
        trimmed = torch.stack([sparsify(tau[name], trim)[0] for tau in taus])
        torch.testing.assert_close(
            result.merged[name], base[name] + ties_merge(trimmed, scaling=0.8)
        )


def test_ties_default_trim_is_global_top_20_percent(family):
    base, taus = _states(family)
    result = run_merge(family, TIES(), device="cpu")
    assert result.sparsifier.scope == "global"
    for index, task in enumerate(family.task_names):
        flat = torch.cat([taus[index][name].flatten().abs() for name in family.tensor_names])
        n_keep = round(0.2 * flat.numel())
        assert result.sparsity()[task] == pytest.approx(1 - n_keep / flat.numel())
        threshold = torch.sort(flat, descending=True).values[n_keep - 1]
        for name in family.tensor_names:
            keep = result.sparsifier.keep_mask(taus[index][name], name=name, task=task)
            assert torch.equal(keep, taus[index][name].abs() >= threshold)


def test_emr_family_matches_pure_function(family):
    base, taus = _states(family)
    result = run_merge(family, EMR(), device="cpu")
    unified, masks, rescalers = emr_merge(taus)
    for index, task in enumerate(family.task_names):
        assert result.rescalers[task] == pytest.approx(rescalers[index], rel=1e-6)
        model = result.model_for(task)
        for name in family.tensor_names:
            expected = base[name] + rescalers[index] * masks[index][name] * unified[name]
            torch.testing.assert_close(model[name], expected)


def test_emr_with_tadrop_ands_the_masks(family):
    base, taus = _states(family)
    tadrop = TADrop()
    result = run_merge(family, EMR(), tadrop, device="cpu")
    unified, masks, _ = emr_merge(taus)
    for index, task in enumerate(family.task_names):
        for name in family.tensor_names:
            keep = tadrop.keep_mask(taus[index][name])
            assert torch.equal(result.task_mask(task, name), masks[index][name] & keep)
    assert all(value > 0.3 for value in result.sparsity().values())


def test_tadrop_global_rate_is_uniform_with_same_overall_sparsity(family):
    per_tensor = run_merge(family, TaskArithmetic(), TADrop(), device="cpu")
    uniform = run_merge(family, TaskArithmetic(), TADrop(scope="global"), device="cpu")
    for task in family.task_names:
        assert uniform.sparsity()[task] == pytest.approx(per_tensor.sparsity()[task], abs=0.01)


def test_presets_and_unknown_names():
    method, sparsifier = build_merge("dare_ties", sparsifier_params={"p": 0.5})
    assert isinstance(method, TIES) and isinstance(sparsifier, DARE)
    assert "emr" in method_names()
    with pytest.raises(ValueError, match="known merge methods: .*ties"):
        build_merge("tiez")
    with pytest.raises(ValueError, match="no parameter"):
        build_merge("ties", method_params={"lambda": 1})


def test_dare_seeded_runs_identical(family):
    first = run_merge(family, TaskArithmetic(), DARE(p=0.5, seed=7), device="cpu")
    second = run_merge(family, TaskArithmetic(), DARE(p=0.5, seed=7), device="cpu")
    for name in family.tensor_names:
        assert torch.equal(first.merged[name], second.merged[name])


def test_cancel_stops_the_merge(family):
    cancel = threading.Event()
    seen = []

    def progress(done, total, name):
        seen.append(done)
        if done == 2:
            cancel.set()

    with pytest.raises(MergeCancelled):
        run_merge(family, TaskArithmetic(), progress=progress, cancel=cancel, device="cpu")
    assert seen == [1, 2]


def test_saved_merge_round_trips_with_provenance(family, tmp_path):
    result = run_merge(family, TaskArithmetic(scaling=0.3), TADrop(), device="cpu")
    out = result.save(tmp_path / "merged")
    checkpoint = open_checkpoint(out)
    assert checkpoint.metadata["method"] == "task_arithmetic"
    assert '"a": 0.5' in checkpoint.metadata["sparsifier_params"]
    assert (out / "config.json").exists()
    saved = load_file(str(out / "model.safetensors"))
    torch.testing.assert_close(
        saved["encoder.layer.0.output.dense.weight"],
        result.merged["encoder.layer.0.output.dense.weight"],
    )
    assert torch.equal(saved["embeddings.position_ids"], family.base.get("embeddings.position_ids"))


def test_emr_saves_one_model_per_task(family, tmp_path):
    result = run_merge(family, EMR(), device="cpu")
    out = result.save(tmp_path / "emr")
    for task in family.task_names:
        saved = load_file(str(out / task / "model.safetensors"))
        torch.testing.assert_close(
            saved["encoder.layer.1.output.dense.weight"],
            result.model_for(task)["encoder.layer.1.output.dense.weight"],
        )


def test_emr_save_refuses_input_folder_and_existing_output(family, tmp_path):
    result = run_merge(family, EMR(), device="cpu")
    base_dir = family.base.source if family.base.source.is_dir() else family.base.source.parent
    before = {path: path.read_bytes() for path in base_dir.iterdir()}
    with pytest.raises(ValueError):
        result.save(base_dir, overwrite=True)
    assert {path: path.read_bytes() for path in base_dir.iterdir()} == before
    out = result.save(tmp_path / "emr")
    with pytest.raises(ValueError, match="overwrite"):
        result.save(out)
    result.save(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(family.task_names)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


@pytest.mark.parametrize("method_name", ["task_arithmetic", "ties", "averaging", "emr"])
def test_streaming_save_equals_in_memory_merge(family, tmp_path, method_name):
    from tadrop.merge.folder import merge_to_folder

    method, sparsifier = build_merge(method_name, "tadrop")
    expected = run_merge(family, method, sparsifier, device="cpu")
    method, sparsifier = build_merge(method_name, "tadrop")
    path, result = merge_to_folder(family, method, sparsifier, tmp_path / "out", device="cpu")
    assert result.sparsity() == pytest.approx(expected.sparsity())
    task = family.task_names[1]
    folder = path / task if method_name == "emr" else path
    saved = load_file(str(folder / "model.safetensors"))
    for name, tensor in expected.model_for(task).items():
        torch.testing.assert_close(saved[name], tensor)
    assert open_checkpoint(folder).metadata["method"] == method_name


def test_cancelled_streaming_save_leaves_nothing(family, tmp_path):
    from tadrop.merge.folder import merge_to_folder

    cancel = threading.Event()
    before = sorted(tmp_path.iterdir())
    with pytest.raises(MergeCancelled):
        merge_to_folder(
            family,
            TaskArithmetic(),
            TADrop(),
            tmp_path / "out",
            device="cpu",
            cancel=cancel,
            progress=lambda d, t, n: cancel.set(),
        )
    assert sorted(tmp_path.iterdir()) == before


def test_averaging_takes_no_parameters():
    from tadrop.registry import METHODS, parameters_of

    assert parameters_of(METHODS["averaging"]) == {}
    with pytest.raises(ValueError, match="no parameter"):
        build_merge("averaging", method_params={"args": 1})


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("method_name", ["task_arithmetic", "emr"])
def test_output_dtype_converts_every_float_tensor_not_only_merged_ones(
    tmp_path, streaming, method_name
):
    from tadrop.merge.folder import merge_to_folder

    base_dir, task_dirs = write_family(tmp_path / "family")
    # The query weights are excluded: they stay at the base, but must still be written in bf16.
    family = load_family(base_dir, task_dirs, exclude=r"query\.weight")
    method, sparsifier = build_merge(method_name, "tadrop")
    out = tmp_path / "out"
    if streaming:
        path, _ = merge_to_folder(
            family, method, sparsifier, out, device="cpu", dtype=torch.bfloat16
        )
    else:
        path = run_merge(family, method, sparsifier, device="cpu").save(out, dtype=torch.bfloat16)
    folder = path / family.task_names[0] if method_name == "emr" else path
    saved = load_file(str(folder / "model.safetensors"))
    base = load_file(str(base_dir / "model.safetensors"))
    assert saved.keys() == base.keys()
    for name, tensor in saved.items():
        if base[name].is_floating_point():
            assert tensor.dtype == torch.bfloat16, name
        else:  # integer buffers keep their dtype and values
            assert tensor.dtype == base[name].dtype and torch.equal(tensor, base[name]), name
    excluded = "encoder.layer.0.attention.self.query.weight"
    torch.testing.assert_close(saved[excluded], base[excluded].to(torch.bfloat16))


@pytest.mark.parametrize("density", [0.05, 0.2, 0.5, 0.9])
def test_global_trim_counts_match_a_stable_sort_when_most_entries_tie(tmp_path, density):
    """Values from a small set (zeros, and neighbours 1 ulp apart inside one 16-bit bucket):
    the threshold falls among ties, which are dropped in walk order (tensor, then flat index)."""
    from safetensors.torch import save_file

    values = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0 + 2**-23, 1.0 + 2**-22, -1.0, 0.5, -3.0])
    generator = torch.Generator().manual_seed(5)
    shapes = {"a.weight": (7, 11), "b.weight": (13,), "c.weight": (5, 5), "d.bias": (40,)}
    base = {name: torch.zeros(shape) for name, shape in shapes.items()}
    (tmp_path / "base").mkdir()
    save_file(base, str(tmp_path / "base" / "model.safetensors"))
    task_dirs = {}
    for task in ("t0", "t1"):
        state = {
            name: values[torch.randint(len(values), shape, generator=generator)]
            for name, shape in shapes.items()
        }
        state["c.weight"] = torch.zeros(shapes["c.weight"])  # a tensor of ties only
        (tmp_path / task).mkdir()
        save_file(state, str(tmp_path / task / "model.safetensors"))
        task_dirs[task] = tmp_path / task
    family = load_family(tmp_path / "base", task_dirs)
    trim = Magnitude(density=density, scope="global").fit(family, device="cpu")
    for task in family.task_names:  # the base is zero: each task tensor is its tau
        taus = [family.get_task_tensor(task, name).float() for name in family.tensor_names]
        flat = torch.cat([tau.flatten().abs() for tau in taus])
        n_drop = flat.numel() - round(density * flat.numel())
        dropped = torch.sort(flat, stable=True).indices[:n_drop]
        owner = torch.cat(
            [torch.full((tau.numel(),), i) for i, tau in enumerate(taus)]
        )  # walk position of each entry
        expected = torch.bincount(owner[dropped], minlength=len(taus)).tolist()
        assert [trim._drop_counts[task][name] for name in family.tensor_names] == expected


def test_emr_mask_composition_computes_only_the_keep_masks(family, monkeypatch):
    """EMR(sparsify="mask") reads only the sparsifier's masks: the sparsified values are not
    made; with sparsify="pre" they are."""
    made = []
    original = TADrop.sparsify_into
    monkeypatch.setattr(
        TADrop, "sparsify_into", lambda self, *a, **k: made.append(1) or original(self, *a, **k)
    )
    masked = run_merge(family, EMR(sparsify="mask"), TADrop(), device="cpu")
    assert made == [] and 0 < masked.sparsity()[family.task_names[0]] < 1
    run_merge(family, EMR(sparsify="pre"), TADrop(), device="cpu")
    assert len(made) == len(family.task_names) * len(family.tensor_names)

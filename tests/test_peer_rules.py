"""Each toolkit's TIES / trim rule, by option, on hand-computed cases: ties at the cut, exact
zero sums, unequal weights. Every expected value is worked out in the comments."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tadrop.merge import TIES, run_merge
from tadrop.merge.ties import TIES_COMPAT, disjoint_merge, elect_signs
from tadrop.sparsify import DARE, Breadcrumbs, Magnitude
from tadrop.sparsify.magnitude import keep_count
from tadrop.task_vectors import load_family


def family_of(root: Path, tasks: dict[str, dict[str, list[float]]]):
    """A family whose base is all zeros, so each task vector is exactly the given values."""
    names = next(iter(tasks.values()))
    base = {name: torch.zeros(len(values)) for name, values in names.items()}
    (root / "base").mkdir()
    save_file(base, str(root / "base" / "model.safetensors"))
    paths = {}
    for task, state in tasks.items():
        (root / task).mkdir()
        save_file(
            {n: torch.tensor(v) for n, v in state.items()}, str(root / task / "model.safetensors")
        )
        paths[task] = root / task
    return load_family(root / "base", paths)


# --- count rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("density", "numel", "expected"),
    [
        # 0.2 * 64 = 12.8: round -> 13, int -> 12, max(1, 12) = 12, int + 1 = 13
        (0.2, 64, {"round": 13, "floor": 12, "floor_min1": 12, "threshold_ties": 13}),
        # 0.29 * 100 = 28.999999999999996 in float64: round -> 29 but int -> 28
        (0.29, 100, {"round": 29, "floor": 28, "floor_min1": 28, "threshold_ties": 29}),
        # 0.01 * 50 = 0.5: round half to even -> 0, int -> 0, max(1, 0) = 1, 0 + 1 = 1
        (0.01, 50, {"round": 0, "floor": 0, "floor_min1": 1, "threshold_ties": 1}),
        # density 1: everything, under every rule (threshold_ties is capped at n)
        (1.0, 7, {"round": 7, "floor": 7, "floor_min1": 7, "threshold_ties": 7}),
    ],
)
def test_keep_count_rules(density, numel, expected):
    for count, kept in expected.items():
        assert keep_count(density, numel, count) == kept, count


# |tau| sorted: 0.9 > 0.5 = 0.5 = 0.5 > 0.4 > 0.3 > 0.2 > 0.1 > 0.05 > 0; d = 0.2 of 10
TIED = torch.tensor([0.1, -0.5, 0.5, 0.3, 0.5, -0.2, 0.0, 0.4, 0.9, 0.05])


def test_threshold_ties_keeps_every_entry_tied_at_the_cut():
    # int(0.2 * 10) + 1 = 3: the 3rd largest |tau| is 0.5, and all three 0.5s tie with it,
    # so FusionBench keeps 0.9 and the three 0.5s (4 entries, indices 1, 2, 4, 8)
    mask = Magnitude(density=0.2, count="threshold_ties").keep_mask(TIED)
    assert torch.nonzero(mask).flatten().tolist() == [1, 2, 4, 8]


def test_floor_breaks_a_tie_at_the_cut_by_flat_index():
    # int(0.2 * 10) = 2: 0.9 and one of the three 0.5s; ties are dropped lowest index first,
    # so the 0.5 at index 4 is kept (indices 1 and 2 dropped)
    for count in ("floor", "floor_min1", "round"):
        mask = Magnitude(density=0.2, count=count).keep_mask(TIED)
        assert torch.nonzero(mask).flatten().tolist() == [4, 8], count


def test_floor_min1_keeps_one_entry_where_floor_keeps_none():
    tau = torch.tensor([0.3, -0.7, 0.1])
    # 0.2 * 3 = 0.6: floor keeps 0, mergekit keeps max(1, 0) = 1 (the -0.7)
    assert Magnitude(density=0.2, count="floor").keep_mask(tau).tolist() == [False] * 3
    assert Magnitude(density=0.2, count="floor_min1").keep_mask(tau).tolist() == [
        False,
        True,
        False,
    ]


def test_global_threshold_ties(tmp_path):
    # one task, 2 tensors, 10 entries; 0.2 * 10 = 2 -> the 3rd largest |tau| over the model is
    # 0.5, tied three times across the two tensors: 0.9 and all 0.5s are kept (4 entries)
    family = family_of(
        tmp_path, {"t": {"a": [0.5, 0.1, 0.9, 0.2, 0.0], "b": [-0.5, 0.3, 0.5, 0.4, 0.05]}}
    )
    trim = Magnitude(density=0.2, scope="global", count="threshold_ties").fit(family, device="cpu")
    result = run_merge(family, TIES(zero_sign="none", divisor="sum"), trim, device="cpu")
    assert result.merged["a"].tolist() == pytest.approx([0.5, 0, 0.9, 0, 0])
    assert result.merged["b"].tolist() == pytest.approx([-0.5, 0, 0.5, 0, 0])
    # the global round rule keeps round(2.0) = 2: 0.9 and the last 0.5 in walk order (b[2])
    trim = Magnitude(density=0.2, scope="global").fit(family, device="cpu")
    result = run_merge(family, TIES(zero_sign="none", divisor="sum"), trim, device="cpu")
    assert result.merged["a"].tolist() == pytest.approx([0, 0, 0.9, 0, 0])
    assert result.merged["b"].tolist() == pytest.approx([0, 0, 0.5, 0, 0])


def test_breadcrumbs_floor_differs_from_round_at_density_0_2():
    tau = torch.arange(1.0, 65.0)  # |tau| = 1..64, distinct
    # round: n_top = round(0.01 * 64 = 0.64) = 1, keep round(12.8) = 13 -> values 51..63
    rounded = Breadcrumbs(density=0.2, gamma=0.01).keep_mask(tau)
    assert tau[rounded].tolist() == list(range(51, 64))
    # floor (mergekit): n_top = int(0.64) = 0, keep int(12.8) = 12 -> values 53..64
    floored = Breadcrumbs(density=0.2, gamma=0.01, count="floor").keep_mask(tau)
    assert tau[floored].tolist() == list(range(53, 65))


# --- zero-sum sign ------------------------------------------------------------------------

# sums [0, -2, -4, 1.5] -> signs [0, -1, -1, +1]; the tensor's signs sum to -1
ZERO_SUM = torch.tensor([[2.0, -1.0, -1.0, 1.0], [-2.0, -1.0, -3.0, 0.5]])


@pytest.mark.parametrize(
    ("zero_sign", "sign", "merged"),
    [
        # + (mergekit, PEFT: sum >= 0): entry 0 keeps the 2 -> mean 2
        ("positive", 1, 2.0),
        # tensor majority is -1: entry 0 keeps the -2
        ("tensor_majority", -1, -2.0),
        ("majority", -1, -2.0),
        # none: unmerged
        ("none", 0, 0.0),
    ],
)
def test_zero_sum_rules(zero_sign, sign, merged):
    signs = elect_signs(ZERO_SUM, zero_sign=zero_sign)
    assert signs.tolist() == [sign, -1, -1, 1]
    # other entries: mean(-1, -1) = -1, mean(-1, -3) = -2, mean(1, 0.5) = 0.75
    assert disjoint_merge(ZERO_SUM, signs).tolist() == [merged, -1.0, -2.0, 0.75]


def test_model_majority_takes_the_whole_models_sign(tmp_path):
    # tensor a: sums [0, -2, -4, 1.5] (its own majority is -); tensor b: sums [+1, +1, +1, +1]
    # elected signs over the model: 0 - 1 - 1 + 1 + 4 = +3 -> the zero sum of a[0] elects +,
    # keeping the 2 (FusionBench); tensor_majority would keep the -2
    family = family_of(
        tmp_path,
        {
            "t1": {"a": [2.0, -1.0, -1.0, 1.0], "b": [1.0, 1.0, 1.0, 1.0]},
            "t2": {"a": [-2.0, -1.0, -3.0, 0.5], "b": [0.0, 0.0, 0.0, 0.0]},
        },
    )
    keep_all = Magnitude(density=1.0)
    model = run_merge(family, TIES(zero_sign="model_majority"), keep_all, device="cpu")
    assert model.merged["a"].tolist() == [2.0, -1.0, -2.0, 0.75]
    tensor = run_merge(family, TIES(), keep_all, device="cpu")
    assert tensor.merged["a"].tolist() == [-2.0, -1.0, -2.0, 0.75]


# --- weights --------------------------------------------------------------------------------

# t1 = [1, 3, 1], t2 = [-2, -1, -3], weights (3, 1)
WEIGHTED = {"t1": {"w": [1.0, 3.0, 1.0]}, "t2": {"w": [-2.0, -1.0, -3.0]}}


def test_mergekit_weighted_election_and_weight_sum_divisor(tmp_path):
    family = family_of(tmp_path, WEIGHTED)
    method = TIES(compat="mergekit", weights={"t1": 3.0, "t2": 1.0})
    result = run_merge(family, method, Magnitude(density=1.0), device="cpu")
    # v = w * tau: [3, 9, 3] and [-2, -1, -3]; sums [1, 8, 0] -> +, +, and 0 -> + (sum >= 0)
    # agreeing v: [3], [9], [3]; divided by the agreeing weights (3): [1, 3, 1]
    assert result.merged["w"].tolist() == [1.0, 3.0, 1.0]
    # normalize off (divisor="sum"): [3, 9, 3]
    method = TIES(divisor="sum", zero_sign="positive", weights={"t1": 3.0, "t2": 1.0})
    assert run_merge(family, method, Magnitude(density=1.0), device="cpu").merged["w"].tolist() == [
        3.0,
        9.0,
        3.0,
    ]


def test_peft_unweighted_election_and_count_divisor(tmp_path):
    family = family_of(tmp_path, WEIGHTED)
    method = TIES(compat="peft", weights={"t1": 3.0, "t2": 1.0})
    result = run_merge(family, method, Magnitude(density=1.0), device="cpu")
    # election on tau: sums [-1, 2, -2] -> -, +, -; agreeing weighted entries: [1 * -2],
    # [3 * 3], [1 * -3]; divided by how many agree (1 each): [-2, 9, -3]
    assert result.merged["w"].tolist() == [-2.0, 9.0, -3.0]


# --- compat presets -------------------------------------------------------------------------


def test_compat_presets_set_every_rule():
    assert TIES(compat="mergekit").rules() == {
        "zero_sign": "positive",
        "divisor": "weight_sum",
        "weighted_election": True,
    }
    assert TIES(compat="peft").rules()["divisor"] == "mean"
    assert TIES(compat="fusion_bench").rules()["zero_sign"] == "model_majority"
    for compat, (scope, count) in {
        "mergekit": ("tensor", "floor_min1"),
        "peft": ("tensor", "floor"),
        "fusion_bench": ("global", "threshold_ties"),
    }.items():
        assert TIES(compat=compat).default_sparsifier()._rules() == {"scope": scope, "count": count}
    assert set(TIES_COMPAT) == {"mergekit", "peft", "fusion_bench"}


def test_compat_conflicting_with_an_explicit_option_names_both():
    with pytest.raises(ValueError, match="compat='peft' sets divisor='mean'.*divisor='sum'"):
        TIES(compat="peft", divisor="sum").validate()
    with pytest.raises(ValueError, match="compat='mergekit' sets count='floor_min1'"):
        Magnitude(compat="mergekit", count="floor").validate()
    with pytest.raises(ValueError, match="compat='nope' is not allowed"):
        TIES(compat="nope").validate()


# one tensor of 10 entries, 2 tasks, trims at d = 0.2 with a tie at the cut in t1
PRESET_TASKS = {
    "t1": {"w": [0.5, -0.5, 0.9, 0.1, 0.5, 0.0, 0.2, 0.0, 0.0, 0.0]},
    "t2": {"w": [-0.5, 0.6, 0.3, 0.0, 0.0, 0.0, 0.0, 0.05, 0.0, 0.0]},
}


@pytest.mark.parametrize(
    ("compat", "expected"),
    [
        # int(0.2 * 10) = 2 per task; t1 keeps 0.9 and the last tied 0.5 (index 4): [., ., .9,
        # ., .5]; t2 keeps 0.6 (index 1) and the last of its tied 0.5/-0.5... t2 |.| = .5 .6 .3:
        # keeps 0.6 and -0.5 (index 0). Sums: [-0.5, 0.6, 0.9, 0, 0.5] -> each entry has one
        # voter: mergekit/peft divide by 1 weight / 1 count
        ("mergekit", [-0.5, 0.6, 0.9, 0.0, 0.5, 0, 0, 0, 0, 0]),
        ("peft", [-0.5, 0.6, 0.9, 0.0, 0.5, 0, 0, 0, 0, 0]),
        # FusionBench, global over the one tensor: int(2) + 1 = 3rd largest; t1: 0.9, 0.5, 0.5,
        # -0.5 all >= 0.5 -> [.5, -.5, .9, 0, .5]; t2: 0.6, 0.5, 0.3 -> [-.5, .6, .3]
        # sums: [0, 0.1, 1.2, 0, 0.5]; elected signs over the model: 0 + 1 + 1 + 0 + 1 = +3, so
        # entry 0's zero sum elects + and keeps t1's 0.5; divisor "sum": [0.5, 0.6, 1.2, 0, 0.5]
        ("fusion_bench", [0.5, 0.6, 1.2, 0.0, 0.5, 0, 0, 0, 0, 0]),
    ],
)
def test_compat_preset_merges(tmp_path, compat, expected):
    family = family_of(tmp_path, PRESET_TASKS)
    result = run_merge(family, TIES(compat=compat), device="cpu")
    assert result.merged["w"].tolist() == pytest.approx(expected, abs=1e-7)


# --- DARE density ---------------------------------------------------------------------------


def test_dare_density_is_one_minus_p():
    tau = torch.ones(1000)
    by_p = DARE(p=0.7, seed=3).keep_mask(tau, name="x", task="t")
    by_density = DARE(density=0.3, seed=3).keep_mask(tau, name="x", task="t")
    assert torch.equal(by_p, by_density)
    assert DARE(density=0.3).rescale_factor(tau, by_p) == pytest.approx(1 / 0.3)


def test_dare_refuses_p_and_density_together():
    with pytest.raises(ValueError, match="both p=0.7 and density=0.3"):
        DARE(p=0.7, density=0.3).validate()


def test_model_majority_pass_does_not_fit_the_global_trim_twice(tmp_path, monkeypatch):
    import tadrop.sparsify.magnitude as magnitude

    calls = []
    original = magnitude.global_drop_counts
    monkeypatch.setattr(
        magnitude, "global_drop_counts", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    family = family_of(tmp_path, PRESET_TASKS)
    run_merge(family, TIES(compat="fusion_bench"), device="cpu")
    assert len(calls) == 1

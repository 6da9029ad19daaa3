"""Each tensor's share of a task's overall sparsity, the dominant tensor and zero-heavy tensors
(``tadrop.stats.contributions``), on tiny tables with hand-computed numbers."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tadrop.stats import (
    DOMINANT_SHARE,
    NEAR_ZERO_DROP_RATE,
    ZERO_HEAVY_FRACTION,
    overall_sparsity,
    sparsity_facts,
    tensor_contributions,
    tensor_stats,
)


def table(rows: list[tuple]) -> pd.DataFrame:
    """Rows of (task, tensor, numel, zero_frac, drop_rate)."""
    frame = pd.DataFrame(rows, columns=["task", "tensor", "numel", "zero_frac", "drop_rate"])
    frame["kind"] = "other"
    return frame


# Task "t": an embedding with 60% of the entries that drops 1%, an attention tensor with 30%
# that drops 40%, and a frozen tensor with 10%, 80% zeros, that drops nothing.
TINY = table(
    [
        ("t", "embed", 600, 0.1, 0.01),
        ("t", "attn", 300, 0.0, 0.40),
        ("t", "frozen", 100, 0.8, 0.0),
        ("u", "embed", 600, 0.1, 0.50),
        ("u", "attn", 300, 0.0, 0.20),
        ("u", "frozen", 100, 0.8, 0.0),
    ]
)


def test_shares_are_per_task_and_add_up_to_the_overall_sparsity():
    contributions = tensor_contributions(TINY, TINY["drop_rate"])
    t = contributions[contributions["task"] == "t"].set_index("tensor")
    assert t["param_share"].to_dict() == pytest.approx({"embed": 0.6, "attn": 0.3, "frozen": 0.1})
    # numel x d / 1000: 600 x 0.01, 300 x 0.4, 100 x 0
    assert t["dropped_share"].to_dict() == pytest.approx(
        {"embed": 0.006, "attn": 0.12, "frozen": 0.0}
    )
    summed = contributions.groupby("task")["dropped_share"].sum()
    assert summed.to_dict() == pytest.approx(overall_sparsity(TINY, TINY["drop_rate"]).to_dict())
    assert summed["u"] == pytest.approx((600 * 0.5 + 300 * 0.2) / 1000)


def test_the_dominant_tensor_and_the_rest_explain_the_overall_number():
    facts = sparsity_facts(tensor_contributions(TINY, TINY["drop_rate"]), "t")
    assert facts.overall == pytest.approx(0.126) and facts.tensors == 3
    dominant = facts.dominant
    assert dominant.tensor == "embed"
    assert dominant.param_share == pytest.approx(0.6)
    assert dominant.drop_rate == pytest.approx(0.01)
    assert dominant.rest_drop_rate == pytest.approx((300 * 0.4 + 100 * 0.0) / 400)
    # overall = share x d + (1 - share) x rest, the identity the page prints
    recombined = 0.6 * dominant.drop_rate + 0.4 * dominant.rest_drop_rate
    assert recombined == pytest.approx(facts.overall)


def test_zero_heavy_tensors_are_counted_and_the_biggest_named():
    rows = table(
        [
            ("t", "big_zeros", 500, 0.9, 0.0),
            ("t", "small_zeros", 100, 0.6, 0.1),
            ("t", "half_zeros", 200, ZERO_HEAVY_FRACTION, 0.3),  # exactly half: not zero-heavy
            ("t", "dense", 200, 0.0, 0.35),
            ("t", "decayed", 50, 0.0, 0.003),  # near zeros: Q_a is 0.3% of Q_b
        ]
    )
    contributions = tensor_contributions(rows, rows["drop_rate"]).set_index("tensor")
    assert list(contributions.index[contributions["zero_heavy"]]) == ["big_zeros", "small_zeros"]
    assert list(contributions.index[contributions["mostly_zero"]]) == [
        "big_zeros",
        "small_zeros",
        "decayed",
    ]
    heavy = sparsity_facts(contributions.reset_index(), "t").zero_heavy
    assert (heavy.count, heavy.exact) == (3, 2)
    assert heavy.biggest == "big_zeros"
    assert heavy.biggest_zero_frac == pytest.approx(0.9) and heavy.biggest_drop_rate == 0.0
    assert heavy.param_share == pytest.approx(650 / 1050)
    assert heavy.mean_drop_rate == pytest.approx((500 * 0.0 + 100 * 0.1 + 50 * 0.003) / 650)
    assert NEAR_ZERO_DROP_RATE == 0.01


def test_no_dominant_and_no_zero_heavy_tensor_is_none():
    rows = table([("t", f"w{index}", 100, 0.0, 0.3) for index in range(5)])  # 20% each
    facts = sparsity_facts(tensor_contributions(rows, rows["drop_rate"]), "t")
    assert facts.dominant is None and facts.zero_heavy is None
    at_threshold = table([("t", "w0", 1, 0.0, 0.3), ("t", "w1", 3, 0.0, 0.3)])
    facts = sparsity_facts(tensor_contributions(at_threshold, at_threshold["drop_rate"]), "t")
    assert facts.dominant.tensor == "w1"  # 75% >= DOMINANT_SHARE
    assert DOMINANT_SHARE <= 0.75


def test_a_mostly_zero_task_vector_drops_nothing_at_the_default_quantiles():
    """The page's claim: more than a fraction a of zeros gives Q_a = 0, so d = 0."""
    tau = torch.zeros(1000)
    tau[:300] = torch.linspace(0.1, 1.0, 300)  # 70% zeros
    row = tensor_stats(tau, a=0.5, b=0.95)
    assert row["zero_frac"] == pytest.approx(0.7)
    assert row["q_a"] == 0.0 and row["drop_rate"] == 0.0
    dense = tensor_stats(torch.linspace(0.1, 1.0, 1000), a=0.5, b=0.95)
    assert dense["drop_rate"] > 0.5


def test_unknown_task_and_missing_columns_are_readable_errors():
    contributions = tensor_contributions(TINY, TINY["drop_rate"])
    with pytest.raises(ValueError, match="No task named 'nope'.*t, u"):
        sparsity_facts(contributions, "nope")
    with pytest.raises(ValueError, match="lacks the column.*zero_frac.*compute_stats"):
        tensor_contributions(TINY.drop(columns=["zero_frac"]), TINY["drop_rate"])

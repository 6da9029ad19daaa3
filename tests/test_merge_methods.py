"""Merge methods on hand-computed small cases, then against the pure state-dict functions."""

import pytest
import torch

from tadrop.merge import emr_merge, emr_unify, task_arithmetic_merge, ties_merge
from tadrop.merge.ties import disjoint_merge, elect_signs

TAU_1 = torch.tensor([1.0, -2.0, 3.0, 0.0])
TAU_2 = torch.tensor([-3.0, 1.0, 1.0, 0.0])


def test_task_arithmetic_hand_computed():
    base = {"w": torch.tensor([1.0, 1.0, 1.0, 1.0])}
    merged = task_arithmetic_merge(
        base, [{"w": TAU_1}, {"w": TAU_2}], scaling=0.5, weights=[1.0, 2.0]
    )
    torch.testing.assert_close(
        merged["w"], torch.tensor([1 + 0.5 * (1 - 6), 1 + 0.5 * (-2 + 2), 1 + 0.5 * 5, 1.0])
    )


def test_ties_hand_computed():
    stack = torch.stack([TAU_1, TAU_2])
    # sums [-2, -1, 4, 0] -> signs [-1, -1, +1, 0]; the zero takes the majority sign (-1)
    assert elect_signs(stack).tolist() == [-1, -1, 1, -1]
    assert elect_signs(stack, zero_sign="none").tolist() == [-1, -1, 1, 0]
    # agreeing entries: [-3], [-2], [3, 1] -> mean 2, none -> 0
    assert ties_merge(stack).tolist() == [-3.0, -2.0, 2.0, 0.0]
    assert disjoint_merge(stack, elect_signs(stack), "sum").tolist() == [-3.0, -2.0, 4.0, 0.0]


def test_ties_count_election_differs_from_mass():
    stack = torch.tensor([[1.0], [1.0], [-5.0]])
    assert elect_signs(stack, "mass").tolist() == [-1]
    assert elect_signs(stack, "count").tolist() == [1]


def test_emr_hand_computed():
    unified, masks = emr_unify(torch.stack([TAU_1, TAU_2]))
    # flag = sign of sum [-2, -1, 4, 0] with zero -> negative: [-1, -1, 1, -1]
    assert masks.tolist() == [[False, True, True, False], [True, False, True, False]]
    assert unified.tolist() == [-3.0, -2.0, 3.0, 0.0]
    _, _, rescalers = emr_merge([{"w": TAU_1}, {"w": TAU_2}])
    # lambda_1 = mean|tau_1| / mean|M_1 * uni| = 1.5 / 1.25; lambda_2 = 1.25 / 1.5
    assert rescalers == pytest.approx([1.2, 5 / 6])

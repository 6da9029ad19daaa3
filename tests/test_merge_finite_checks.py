"""The non-finite guards take one read pass (the sum of data already in hand) and fall back to
the exact check only when that sum is not finite: NaN/Inf is still always found and named, and
finite values whose sum (or difference) overflows float32 are never refused by the shortcut."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tadrop.io import CheckpointError, open_checkpoint
from tadrop.io.writer import write_checkpoint
from tadrop.task_vectors import iter_task_vectors, load_family

BIG = 3.0e38  # finite in float32 (max 3.4e38); two of them sum to Inf


def family_of(tmp_path, base: list[float], tasks: list[list[float]]):
    save_file({"w": torch.tensor(base)}, str(tmp_path / "base.safetensors"))
    paths = {}
    for index, values in enumerate(tasks):
        paths[f"t{index}"] = tmp_path / f"t{index}.safetensors"
        save_file({"w": torch.tensor(values)}, str(paths[f"t{index}"]))
    return load_family(tmp_path / "base.safetensors", paths)


@pytest.mark.parametrize(
    ("base", "tasks", "named"),
    [
        ([float("nan"), 0.0], [[1.0, 1.0], [2.0, 2.0]], "base.safetensors"),
        ([0.0, float("inf")], [[1.0, float("inf")], [2.0, 2.0]], "base.safetensors"),
        ([0.0, 0.0], [[1.0, 1.0], [2.0, float("-inf")]], "t1.safetensors"),
        ([0.0, 0.0], [[float("nan"), 1.0], [2.0, 2.0]], "t0.safetensors"),
    ],
)
def test_nan_or_inf_in_any_input_is_named(tmp_path, base, tasks, named):
    family = family_of(tmp_path, base, tasks)
    with pytest.raises(CheckpointError, match=named):
        list(iter_task_vectors(family, device="cpu"))


def test_finite_inputs_whose_sum_or_difference_overflows_pass_the_input_check(tmp_path):
    # tau sum overflows (BIG + BIG) and one difference overflows (BIG - (-BIG)): inputs finite.
    family = family_of(tmp_path, [0.0, -BIG], [[BIG, BIG], [BIG, 0.0]])
    (tensor,) = list(iter_task_vectors(family, device="cpu"))
    assert torch.isinf(tensor.task_vectors[0, 1])
    assert not bool(torch.isfinite(tensor.task_vectors.sum()))


def test_the_writer_counts_exactly_when_the_sum_is_not_finite(tmp_path):
    out = write_checkpoint([("w", torch.tensor([BIG, BIG, 1.0]))], tmp_path / "ok")
    assert torch.equal(open_checkpoint(out).get("w"), torch.tensor([BIG, BIG, 1.0]))
    broken = torch.tensor([BIG, BIG, float("nan"), float("inf")])
    with pytest.raises(CheckpointError, match="has 2 NaN/Inf value"):
        write_checkpoint([("w", broken)], tmp_path / "bad")


def test_a_cast_out_of_range_is_refused_even_when_the_input_sum_is_finite(tmp_path):
    with pytest.raises(CheckpointError, match="beyond the range of torch.float16"):
        write_checkpoint([("w", torch.tensor([1e5, -1e5]))], tmp_path / "out", dtype=torch.float16)

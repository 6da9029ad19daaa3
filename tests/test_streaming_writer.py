"""The planned (streaming) writer: same bytes as the plain writer, tensors off the plan refused,
nothing left behind on an error, and no tensor held after it is written."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from io_fixtures import snapshot

from tadrop.io import CheckpointError, write_checkpoint
from tadrop.io.safetensors_format import TensorSpec


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def mixed_tensors() -> list[tuple[str, torch.Tensor]]:
    """Every width (8, 4, 2, 1 bytes), a 0-d and an empty tensor, in an order where the data
    layout (largest element size first) differs from the header's."""
    generator = torch.Generator().manual_seed(0)

    def normal(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(dtype)

    return [
        ("embed.weight", normal(6, 4, dtype=torch.bfloat16)),
        ("layers.0.mask", torch.tensor([True, False, True])),
        ("layers.0.weight", normal(5, 3)),
        ("layers.0.scale", torch.tensor(2.5, dtype=torch.float16)),
        ("layers.0.empty", torch.zeros(0, 3)),
        ("position_ids", torch.arange(9)),
        ("layers.1.weight", normal(7, dtype=torch.float64)),
        ("lm_head.weight", normal(4, 6, dtype=torch.bfloat16)),
    ]


def plan_of(tensors: list[tuple[str, torch.Tensor]]) -> list[TensorSpec]:
    return [TensorSpec.of(name, tensor) for name, tensor in tensors]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.parametrize("max_shard_bytes", [10**9, 1, 40, 100, 200])
@pytest.mark.parametrize("arrival", ["plan order", "reversed"])
def test_planned_folder_is_byte_identical_to_the_plain_writer(tmp_path, max_shard_bytes, arrival):
    tensors = mixed_tensors()
    options = dict(max_shard_bytes=max_shard_bytes, metadata={"method": "ties", "k": [1, 2]})
    plain = write_checkpoint(iter(tensors), tmp_path / "plain", **options)
    given = tensors if arrival == "plan order" else tensors[::-1]
    planned = write_checkpoint(iter(given), tmp_path / "planned", plan=plan_of(tensors), **options)
    expected = folder_bytes(plain)
    assert folder_bytes(planned) == expected
    sharded = "model.safetensors.index.json" in expected
    assert sharded == (max_shard_bytes < 289)  # 289 data bytes: one file, or an index
    assert leftovers(tmp_path) == []


def test_planned_cast_to_the_output_dtype_matches_the_plain_writer(tmp_path):
    tensors = [("a", torch.linspace(-1, 1, 11)), ("ids", torch.arange(3))]
    plan = [TensorSpec("a", torch.bfloat16, (11,)), TensorSpec("ids", torch.int64, (3,))]
    plain = write_checkpoint(iter(tensors), tmp_path / "plain", dtype=torch.bfloat16)
    planned = write_checkpoint(iter(tensors), tmp_path / "new", dtype=torch.bfloat16, plan=plan)
    assert folder_bytes(planned) == folder_bytes(plain)


OFF_PLAN = {
    "unknown name": ([("a", torch.ones(2)), ("c", torch.ones(2))], "'c' is not among"),
    "twice": ([("a", torch.ones(2)), ("a", torch.ones(2))], "'a' was given twice"),
    "shape": ([("a", torch.ones(3)), ("b", torch.ones(2))], r"shape \(3,\) but the plan"),
    "dtype": ([("a", torch.ones(2, dtype=torch.float64))], "float64 of shape"),
    "missing": ([("a", torch.ones(2))], r"1 planned tensor\(s\) never came"),
}


@pytest.mark.parametrize("case", OFF_PLAN)
def test_a_tensor_off_the_plan_is_refused_and_the_old_output_kept(tmp_path, case):
    out = write_checkpoint([("old", torch.ones(1))], tmp_path / "out")
    before = snapshot(out)
    plan = [TensorSpec("a", torch.float32, (2,)), TensorSpec("b", torch.float32, (2,))]
    given, message = OFF_PLAN[case]
    with pytest.raises(CheckpointError, match=message) as info:
        write_checkpoint(iter(given), out, plan=plan, overwrite=True, max_shard_bytes=8)
    assert str(out) in str(info.value)
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


def test_the_guards_still_refuse_non_finite_and_out_of_range_tensors(tmp_path):
    plan = [TensorSpec("a", torch.float32, (2,))]
    with pytest.raises(CheckpointError, match="NaN/Inf"):
        write_checkpoint([("a", torch.tensor([1.0, float("nan")]))], tmp_path / "x", plan=plan)
    half = [TensorSpec("a", torch.float16, (2,))]
    with pytest.raises(CheckpointError, match="beyond the range of torch.float16"):
        big = [("a", torch.tensor([1.0, 1e9]))]
        write_checkpoint(big, tmp_path / "y", plan=half, dtype=torch.float16)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_midway_leaves_nothing(tmp_path):
    tensors = mixed_tensors()

    def interrupted() -> Iterator[tuple[str, torch.Tensor]]:
        yield from tensors[:4]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(interrupted(), tmp_path / "out", plan=plan_of(tensors), max_shard_bytes=64)
    assert list(tmp_path.iterdir()) == []


def tensors_alive_while_written(tmp_path: Path, **options: object) -> int:
    """The most earlier tensors whose memory is still held (by anyone) when the next is made."""
    plan = [TensorSpec(f"t{i}", torch.float32, (1024,)) for i in range(20)]
    made: list[weakref.ref] = []
    most = 0

    def tensors() -> Iterator[tuple[str, torch.Tensor]]:
        nonlocal most
        for spec in plan:
            most = max(most, sum(ref() is not None for ref in made))
            # a numpy array lives as long as any tensor sharing its memory (a detached or
            # reshaped view too), so its weak reference says whether the memory is still held
            array = np.ones(spec.shape, dtype=np.float32)
            made.append(weakref.ref(array))
            yield spec.name, torch.from_numpy(array)
            del array

    write_checkpoint(tensors(), tmp_path / "out", max_shard_bytes=2**30, **options)
    return most


def test_the_planned_writer_holds_no_tensor_after_writing_it(tmp_path):
    held = tensors_alive_while_written(tmp_path / "plain", plan=None)
    assert held >= 19  # the plain writer holds its whole shard: the check can see holding
    plan = [TensorSpec(f"t{i}", torch.float32, (1024,)) for i in range(20)]
    assert tensors_alive_while_written(tmp_path / "streamed", plan=plan) <= 1

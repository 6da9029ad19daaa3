"""Merge a family straight into an output folder, streaming when the method allows it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tadrop.io import write_checkpoint
from tadrop.merge.base import (
    Cancel,
    MergeMethod,
    MergeResult,
    Progress,
    SparsifiedTensor,
    _prepare,
    iter_merged,
)
from tadrop.merge.save import (
    Walk,
    input_paths,
    output_dtype,
    output_plan,
    output_tensor,
    provenance,
)
from tadrop.quantiles.memory import keep_scratch_memory
from tadrop.sparsify.base import Sparsifier

if TYPE_CHECKING:
    from tadrop.task_vectors import ModelFamily


def add_base(base: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """theta_pre + delta, written into the method's fresh ``delta`` when the dtypes allow: the
    base of a safetensors input is a private memory map of the file, and writing into it makes
    the kernel copy every page it touches (a third of a TIES merge's system time)."""
    if delta.dtype == torch.result_type(base, delta) and delta.shape == base.shape:
        return delta.add_(base)
    return base + delta


def merge_to_folder(
    family: ModelFamily,
    method: MergeMethod,
    sparsifier: Sparsifier | None,
    out_dir: str | Path,
    *,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    overwrite: bool = False,
    max_shard_bytes: int = 5 * 2**30,
    dtype: torch.dtype | None = None,
) -> tuple[Path, MergeResult]:
    """Merge and write in one streaming pass: each merged tensor goes to the writer as soon as
    it is made and is written at its planned place, so peak memory is a few tensors. A method that does not
    ``streams`` (EMR, whose task models need every tensor's rescaler contributions first) walks
    the family twice (``MergeResult.write_from_walks``): its sums first, then the tensors.

    Returns the written folder and the (tensor-free) result with sparsity and provenance.
    """
    result = method.new_result(family, _prepare(method, sparsifier))
    with keep_scratch_memory():  # each tensor's temporaries reuse the last one's pages
        if not method.streams:
            walk = _two_walks(
                family, method, result, device=device, progress=progress, cancel=cancel
            )
            path = result.write_from_walks(
                walk,
                Path(out_dir),
                overwrite=overwrite,
                max_shard_bytes=max_shard_bytes,
                dtype=dtype,
            )
            return path, result
        merged = set(family.tensor_names)
        rest = [name for name in family.base.keys() if name not in merged]

        def tensors() -> Iterator[tuple[str, torch.Tensor]]:
            for tensor, delta in iter_merged(
                family, method, result, device=device, progress=progress, cancel=cancel
            ):
                target = output_dtype(family.base.dtype(tensor.name), dtype)
                yield tensor.name, add_base(tensor.base, delta).to("cpu", target)
                del tensor, delta  # see iter_merged
            for name in rest:
                yield name, output_tensor(family.base.get(name), dtype)

        path = write_checkpoint(
            tensors(),
            Path(out_dir),
            aux_dir=family.base.aux_dir,
            max_shard_bytes=max_shard_bytes,
            metadata=provenance(result),
            input_paths=input_paths(result),
            overwrite=overwrite,
            context=result.context,
            plan=output_plan(family.base, dtype, [*family.tensor_names, *rest]),
        )
    return path, result


def _two_walks(
    family: ModelFamily,
    method: MergeMethod,
    result: MergeResult,
    *,
    device: str | torch.device,
    progress: Progress | None,
    cancel: Cancel | None,
) -> Walk:
    """``iter_merged`` as a ``Walk``; progress counts both walks (2 x tensors)."""

    def walk(again: bool) -> Iterator[tuple[SparsifiedTensor, object]]:
        def counted(done: int, total: int, name: str) -> None:
            if progress is not None:
                progress(done + total * again, 2 * total, name)

        return iter_merged(
            family, method, result, device=device, progress=counted, cancel=cancel, again=again
        )

    return walk

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
    _prepare,
    iter_merged,
    output_tensor,
    run_merge,
)
from tadrop.merge.save import input_paths, provenance, save_result
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
    it is made, so peak memory is one shard, not the whole model. A method that does not
    ``streams`` (EMR, whose task models need every tensor's rescaler contributions first) is
    merged in memory and then written.

    Returns the written folder and the (tensor-free) result with sparsity and provenance.
    """
    if not method.streams:
        result = run_merge(
            family, method, sparsifier, device=device, progress=progress, cancel=cancel
        )
        return save_result(
            result, out_dir, overwrite=overwrite, max_shard_bytes=max_shard_bytes, dtype=dtype
        ), result
    result = method.new_result(family, _prepare(method, sparsifier))

    def tensors() -> Iterator[tuple[str, torch.Tensor]]:
        for tensor, delta in iter_merged(
            family, method, result, device=device, progress=progress, cancel=cancel
        ):
            target = dtype or family.base.dtype(tensor.name)
            yield tensor.name, add_base(tensor.base, delta).to("cpu", target)
        merged = set(family.tensor_names)
        for name in family.base.keys():
            if name not in merged:
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
    )
    return path, result

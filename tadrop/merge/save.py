"""Writing merge results: one Hugging Face style folder (or, for EMR, one per task + compact)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tadrop.io import write_checkpoint
from tadrop.io.atomic import exists_error, remove_path, replace_dir, temp_sibling
from tadrop.io.writer import check_not_over_inputs, tadrop_version
from tadrop.merge.base import (
    Cancel,
    MergeMethod,
    MergeResult,
    Progress,
    _prepare,
    iter_merged,
    output_tensor,
)
from tadrop.sparsify.base import Sparsifier

if TYPE_CHECKING:
    from tadrop.task_vectors import ModelFamily


def _provenance(result: MergeResult, extra: dict | None = None) -> dict[str, str]:
    description = {**result.describe(), **(extra or {})}
    description["tadrop_version"] = tadrop_version()
    return {
        key: value if isinstance(value, str) else json.dumps(value, default=str)
        for key, value in description.items()
    }


def _input_paths(result: MergeResult) -> list[Path]:
    return [
        result.family.base.source,
        *(checkpoint.source for checkpoint in result.family.tasks.values()),
    ]


def save_result(
    result: MergeResult,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    max_shard_bytes: int = 5 * 2**30,
    dtype: torch.dtype | None = None,
    tasks: list[str] | None = None,
) -> Path:
    """Write the merged model to ``out_dir`` atomically.

    For EMR, ``out_dir/<task>/`` holds each task's reconstructed model (``tasks`` limits which).
    """
    from tadrop.merge.emr import EMRResult

    out_dir = Path(out_dir)
    options = dict(
        aux_dir=result.family.base.aux_dir,
        max_shard_bytes=max_shard_bytes,
        input_paths=_input_paths(result),
        overwrite=overwrite,
        context=result.context,
    )
    if not isinstance(result, EMRResult):
        tensors = ((name, tensor) for name, tensor in result.model_for(dtype=dtype).items())
        return write_checkpoint(tensors, out_dir, metadata=_provenance(result), **options)
    check_not_over_inputs(out_dir, options["input_paths"])
    if out_dir.exists() and not overwrite:
        raise exists_error(out_dir)
    staging = temp_sibling(out_dir, "tadrop-tmp")
    staging.mkdir(parents=True)
    try:
        for task in tasks or result.family.task_names:
            state = result.model_for(task, dtype=dtype)
            metadata = _provenance(result, {"task": task, "rescaler": result.rescalers[task]})
            write_checkpoint(
                iter(state.items()),
                staging / task,
                metadata=metadata,
                **{**options, "overwrite": False},
            )
        replace_dir(staging, out_dir, overwrite=overwrite)
    except BaseException:
        remove_path(staging)
        raise
    return out_dir


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
    it is made, so peak memory is one shard, not the whole model. EMR, whose task models need
    every tensor's rescaler contributions first, is merged in memory and then written.

    Returns the written folder and the (tensor-free) result with sparsity and provenance.
    """
    from tadrop.merge.emr import EMR

    if isinstance(method, EMR):
        from tadrop.merge.base import run_merge

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
            yield tensor.name, tensor.base.add_(delta).to("cpu", target)
        merged = set(family.tensor_names)
        for name in family.base.keys():
            if name not in merged:
                yield name, output_tensor(family.base.get(name), dtype)

    path = write_checkpoint(
        tensors(),
        Path(out_dir),
        aux_dir=family.base.aux_dir,
        max_shard_bytes=max_shard_bytes,
        metadata=_provenance(result),
        input_paths=_input_paths(result),
        overwrite=overwrite,
        context=result.context,
    )
    return path, result

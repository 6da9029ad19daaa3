"""Writing merge results: one Hugging Face style folder (or, for EMR, one per task + compact)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tadrop.io import write_checkpoint
from tadrop.io.atomic import exists_error, remove_path, replace_dir, temp_sibling
from tadrop.io.writer import check_not_over_inputs
from tadrop.merge.base import MergeResult


def _provenance(result: MergeResult, extra: dict | None = None) -> dict[str, str]:
    import tadrop

    description = {**result.describe(), **(extra or {})}
    description["tadrop_version"] = getattr(tadrop, "__version__", "0")
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

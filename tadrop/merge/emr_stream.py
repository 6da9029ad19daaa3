"""EMR written without the whole model in memory: two walks over the inputs.

The rescalers lambda_k are sums over every tensor, so no task model can be written before the
last tensor is merged. The first walk merges each tensor and adds only its terms to those sums
(``EMRResult.accumulate``); the second recomputes each tensor's unified vector and masks (the
method and the sparsifiers are deterministic, so they are the same) and writes every task
model's tensor, and the compact artifact's, through planned writers (``planned_checkpoint``):
memory holds a few tensors, not K models. The files are byte-identical to ``write_parts``'s.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tadrop.io.writer import PlannedShards, planned_checkpoint
from tadrop.merge.emr_artifact import (
    ARTIFACT_DIR,
    ArtifactFiles,
    artifact_files,
    pack_mask,
    refuse_artifact_task,
    task_tensor,
    write_manifest,
)
from tadrop.merge.save import (
    Walk,
    input_paths,
    output_dtype,
    output_plan,
    output_tensor,
    provenance,
    staged_dir,
)

if TYPE_CHECKING:
    from tadrop.merge.emr import EMRResult


def write_in_two_walks(
    result: EMRResult,
    walk: Walk,
    out_dir: Path,
    *,
    overwrite: bool = False,
    max_shard_bytes: int = 5 * 2**30,
    dtype: torch.dtype | None = None,
) -> Path:
    """Fill ``result``'s rescaler sums in a first ``walk``, then write what its ``output``
    parameter asks for (``staging/<task>/`` per task model and/or ``staging/emr_artifact/``) in
    a second, into ``out_dir`` atomically."""
    output = result.params.get("output", "task_models")
    tasks = result.family.task_names if output in ("task_models", "both") else []
    for task in tasks:
        refuse_artifact_task(task)
    _sum_rescalers(result, walk)
    out_dir = Path(out_dir).expanduser().absolute()
    shapes = {name: tuple(result.family.base.shape(name)) for name in result.family.tensor_names}
    with staged_dir(out_dir, overwrite=overwrite, inputs=input_paths(result)) as staging:
        with ExitStack() as stack:
            models = {
                task: stack.enter_context(
                    _task_model(result, task, staging, max_shard_bytes=max_shard_bytes, dtype=dtype)
                )
                for task in tasks
            }
            artifact = None
            if output in ("compact", "both"):
                count = len(result.family.task_names)
                artifact = stack.enter_context(
                    artifact_files(staging / ARTIFACT_DIR, shapes, count)
                )
            _second_walk(result, walk, models, artifact, dtype)
        if artifact is not None:
            result.artifact = write_manifest(result, staging / ARTIFACT_DIR, shapes, dtype)
    return out_dir


def _sum_rescalers(result: EMRResult, walk: Walk) -> None:
    """The first walk (in its own frame: its last tensor is not held during the second)."""
    for tensor, (unified, masks, source) in walk(False):
        result.accumulate(unified, masks, source)
        del tensor, unified, masks, source  # see iter_merged


def _task_model(
    result: EMRResult, task: str, staging: Path, *, max_shard_bytes: int, dtype: torch.dtype | None
):
    """The planned writer of task ``task``'s model folder (the base's tensors, in its order)."""
    base = result.family.base
    extra = {"task": task, "rescaler": result.rescalers[task]}
    return planned_checkpoint(
        staging / task,
        output_plan(base, dtype, base.keys()),
        aux_dir=base.aux_dir,
        max_shard_bytes=max_shard_bytes,
        metadata=provenance(result, extra),
        input_paths=input_paths(result),
        context=result.context,
    )


def _second_walk(
    result: EMRResult,
    walk: Walk,
    models: dict[str, PlannedShards],
    artifact: ArtifactFiles | None,
    dtype: torch.dtype | None,
) -> None:
    """Write each merged tensor of every task model (and the artifact), then the base's rest."""
    base = result.family.base
    rescalers = result.rescalers
    for tensor, (unified, masks, source) in walk(True):
        target = output_dtype(base.dtype(tensor.name), dtype)
        for index, (task, model) in enumerate(models.items()):
            task_model = task_tensor(tensor.base, unified, masks[index], rescalers[task])
            model.write(tensor.name, task_model.to("cpu", target))
            del task_model
        if artifact is not None:
            artifact.write(tensor.name, unified, [pack_mask(mask) for mask in masks])
        del tensor, unified, masks, source  # see iter_merged
    merged_names = set(result.family.tensor_names)
    for name in base.keys():
        if name not in merged_names and models:
            kept = output_tensor(base.get(name), dtype)
            for model in models.values():
                model.write(name, kept)

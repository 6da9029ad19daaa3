"""EMR-Merging (Huang et al., 2024), as in its official code.

Per tensor, with task vectors tau_k (k = 1..K):
    flag   = sign(sum_k tau_k), a zero sum counting as negative          (+1 / -1)
    M_k    = (tau_k * flag) > 0                                           task masks
    tau_uni = flag * max_k |M_k * tau_k|                                  unified task vector
Over all tensors:
    lambda_k = sum_tensors mean|tau_k| / sum_tensors mean|M_k * tau_uni|   rescalers
Task model k = theta_pre + lambda_k * M_k * tau_uni.

With a sparsifier (``sparsify="mask"``, the TADrop paper's composition) the sparsifier's
keep-mask is ANDed with M_k before the rescalers are computed; tau_uni and the numerator of
lambda_k use the task vectors as read. ``sparsify="pre"`` instead runs EMR on the sparsified
(and rescaled) task vectors. Stored compactly: unified vector, bit-packed masks, rescalers.

Written (``output``): the K task models (``"task_models"``), the compact artifact alone
(``"compact"``, see ``emr_artifact``; any task model is expanded from it bit-exactly) or both.
``merge_to_folder`` writes them in two walks over the inputs (``emr_stream``), holding a few
tensors; ``run_merge`` keeps the unified vector and packed masks in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from tadrop.merge.base import MergeMethod, MergeResult, SparsifiedTensor
from tadrop.merge.emr_artifact import (
    ARTIFACT_DIR,
    pack_mask,
    refuse_artifact_task,
    task_tensor,
    unpack_mask,
    write_artifact,
)
from tadrop.merge.save import Walk, WriteModel

SPARSIFY_MODES = ("mask", "pre")
OUTPUTS = ("task_models", "compact", "both")


def emr_unify(task_vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, *shape) task vectors -> (unified (*shape), masks (K, *shape) bool)."""
    # Arithmetic on 0/1 floats instead of torch.where on bools (several times slower on a CPU).
    positive = (task_vectors.sum(dim=0) > 0).to(task_vectors.dtype)  # 1.0 / 0.0
    flag = positive * 2 - 1  # +1 / -1
    masks = torch.empty_like(task_vectors, dtype=torch.bool)
    signed = torch.empty_like(flag)  # one task's tau_k * flag at a time, not a (K, *shape) copy
    for index, task_vector in enumerate(task_vectors):
        torch.gt(torch.mul(task_vector, flag, out=signed), 0, out=masks[index])
    # flag * max_k |M_k * tau_k| is max(max_k tau_k, 0) where flag = +1 and min(min_k tau_k, 0)
    # where flag = -1: two reductions instead of three (K, *shape) temporaries. Exactly one of
    # the two products below is the value, the other a zero, so the sum is exact.
    highest = task_vectors.amax(dim=0).clamp_(min=0).mul_(positive)
    lowest = task_vectors.amin(dim=0).clamp_(max=0).mul_(1 - positive)
    return highest.add_(lowest), masks


@dataclass
class EMRResult(MergeResult):
    """Unified task vector, bit-packed task masks and rescalers; task models built on demand."""

    unified: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> float32 tau_uni
    packed_masks: dict[str, list[np.ndarray]] = field(default_factory=dict)  # name -> K packed
    abs_mean_task: list[float] = field(default_factory=list)  # sum over tensors of mean|tau_k|
    abs_mean_masked: list[float] = field(default_factory=list)  # ... of mean|M_k * tau_uni|
    writes_parts: ClassVar[bool] = True
    artifact: dict | None = None  # the compact artifact's manifest, once written

    def add(
        self, tensor: SparsifiedTensor, merged: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> None:
        unified, masks, source = merged
        self.unified[tensor.name] = unified.cpu()
        self.packed_masks[tensor.name] = [pack_mask(mask) for mask in masks]
        self.accumulate(unified, masks, source)

    def accumulate(self, unified: torch.Tensor, masks: torch.Tensor, source: torch.Tensor) -> None:
        """Add one tensor's terms to the sums over all tensors that make the rescalers.
        ``source`` (the walk's task vectors, not needed after this) is overwritten with |tau|."""
        numel = unified.numel()
        # mean|tau_k| and mean|M_k * tau_uni|: float32 pairwise sums (relative error ~1e-7),
        # |tau| in place rather than a (K, *shape) temporary (the same values: |.| is exact)
        task_abs_sums = source.abs_().reshape(len(source), -1).sum(dim=1).tolist()  # 0-d: (K,)
        unified_abs = unified.abs().flatten()
        masked = torch.empty_like(unified_abs)
        for index in range(masks.shape[0]):
            self.abs_mean_task[index] += task_abs_sums[index] / numel
            masked.copy_(masks[index].flatten()).mul_(unified_abs)  # 0/1 floats: no bool where
            self.abs_mean_masked[index] += float(masked.sum()) / numel

    @property
    def rescalers(self) -> dict[str, float]:
        return {
            task: (num / den if den > 0 else 1.0)
            for task, num, den in zip(
                self.family.task_names, self.abs_mean_task, self.abs_mean_masked, strict=True
            )
        }

    def task_mask(self, task: str, name: str) -> torch.Tensor:
        index = self.family.task_names.index(task)
        return unpack_mask(self.packed_masks[name][index], tuple(self.unified[name].shape))

    def is_merged(self, name: str) -> bool:
        return name in self.unified

    def merged_tensor(self, task: str, name: str) -> torch.Tensor:
        if task not in self.family.task_names:
            raise ValueError(
                f"EMR builds one model per task; pass one of {self.family.task_names}, got {task!r}."
            )
        base = self.family.base.get(name).float()  # read again (memory-mapped) rather than held
        return task_tensor(
            base, self.unified[name], self.task_mask(task, name), self.rescalers[task]
        )

    def write_parts(
        self,
        staging: Path,
        write_model: WriteModel,
        *,
        dtype: torch.dtype | None,
        tasks: list[str] | None,
    ) -> None:
        """``staging/<task>/`` per task model and/or ``staging/emr_artifact/`` (``output``)."""
        output = self.params.get("output", "task_models")
        if output in ("task_models", "both"):
            for task in tasks or self.family.task_names:
                refuse_artifact_task(task)
                extra = {"task": task, "rescaler": self.rescalers[task]}
                write_model(task, extra, self.iter_model(task, dtype=dtype))
        if output in ("compact", "both"):
            self.artifact = write_artifact(self, staging / ARTIFACT_DIR, dtype=dtype)

    def write_from_walks(self, walk: Walk, out_dir: Path, **options: object) -> Path:
        """Merge and write without holding the model: see ``tadrop.merge.emr_stream``."""
        from tadrop.merge.emr_stream import write_in_two_walks

        return write_in_two_walks(self, walk, out_dir, **options)


class EMR(MergeMethod):
    name: ClassVar[str] = "emr"
    streams: ClassVar[bool] = False  # task models need every tensor's rescaler contributions

    def __init__(self, sparsify: str = "mask", output: str = "task_models") -> None:
        self.sparsify = sparsify
        self.output = output

    def validate(self) -> None:
        for what, value, allowed in (
            ("sparsify", self.sparsify, SPARSIFY_MODES),
            ("output", self.output, OUTPUTS),
        ):
            if value not in allowed:
                raise ValueError(f"EMR {what}={value!r} is not allowed; use one of {allowed}.")

    def disk_bytes(self, model_bytes: int, parameters: int, tasks: int) -> int:
        """What ``output`` writes: K models of ``model_bytes`` and/or the artifact (float32
        tau_uni and K bit masks of the ``parameters`` merged entries)."""
        models = tasks * model_bytes if self.output in ("task_models", "both") else 0
        artifact = 4 * parameters + tasks * parameters // 8 if self.output != "task_models" else 0
        return models + artifact

    def uses_sparse_values(self) -> bool:
        return self.sparsify == "pre"  # "mask" ANDs the keep-masks with EMR's own masks

    def new_result(self, family, sparsifier) -> EMRResult:
        count = len(family.task_names)
        return EMRResult(
            self.name,
            self.get_params(),
            sparsifier,
            family,
            abs_mean_task=[0.0] * count,
            abs_mean_masked=[0.0] * count,
        )

    def merge_tensor(
        self, tensor: SparsifiedTensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(unified, final masks, task vectors used for the rescaler numerators)."""
        use_sparse = self.sparsify == "pre" and tensor.keep_masks is not None
        source = tensor.sparse if use_sparse else tensor.task_vectors
        unified, masks = emr_unify(source)
        if tensor.keep_masks is not None and not use_sparse:
            masks = masks & tensor.keep_masks
        return unified, masks, source


def emr_merge(
    task_vectors: list[dict[str, torch.Tensor]],
) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]], list[float]]:
    """Pure function over state dicts: (unified vector, masks per task, rescalers per task)."""
    names = list(task_vectors[0])
    unified, masks = {}, [dict() for _ in task_vectors]
    numerators = [0.0] * len(task_vectors)
    denominators = [0.0] * len(task_vectors)
    for name in names:
        stack = torch.stack([tv[name].float() for tv in task_vectors])
        unified[name], stacked_masks = emr_unify(stack)
        for index in range(len(task_vectors)):
            masks[index][name] = stacked_masks[index]
            numerators[index] += float(stack[index].abs().mean(dtype=torch.float64))
            denominators[index] += float(
                (stacked_masks[index] * unified[name]).abs().mean(dtype=torch.float64)
            )
    rescalers = [
        num / den if den > 0 else 1.0 for num, den in zip(numerators, denominators, strict=True)
    ]
    return unified, masks, rescalers

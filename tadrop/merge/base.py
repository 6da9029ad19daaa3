"""Merge methods and the walk that applies one to a whole family.

A method combines, tensor by tensor, the K (optionally sparsified) task vectors into one
merged delta. ``run_merge`` walks the family once (plus a fit pass for global sparsifiers),
sparsifies each task vector, calls the method, and collects a ``MergeResult``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import torch

from tadrop.io import count_nonfinite
from tadrop.merge.save import Walk, output_dtype, output_tensor, save_result
from tadrop.params import describe, get_params, validate_params
from tadrop.quantiles.buffers import WalkBuffers
from tadrop.quantiles.memory import keep_scratch_memory
from tadrop.sparsify.base import Sparsifier

if TYPE_CHECKING:
    from tadrop.task_vectors import ModelFamily, TensorTaskVectors

Progress = Callable[[int, int, str], None]


class Cancel(Protocol):
    def is_set(self) -> bool: ...


class MergeCancelled(RuntimeError):
    """The user cancelled a merge; nothing was written."""


@dataclass
class SparsifiedTensor:
    """One tensor's task vectors after sparsification."""

    name: str
    base: torch.Tensor  # (*shape) float32
    task_vectors: torch.Tensor  # (K, *shape) float32, as read
    # (K, *shape) float32, sparsified and rescaled; the task_vectors themselves when there is no
    # sparsifier or the method only reads the masks (MergeMethod.uses_sparse_values)
    sparse: torch.Tensor
    keep_masks: torch.Tensor | None  # (K, *shape) bool, None without a sparsifier
    task_names: list[str] = field(default_factory=list)


class MergeMethod:
    """Base class: ``__init__`` stores parameters; ``merge_tensor`` returns the merged delta."""

    name: ClassVar[str] = "method"
    default_sparsifier: ClassVar[Callable[[], Sparsifier] | None] = None
    # True: each merged tensor can be written as soon as it is made (merge_to_folder streams)
    streams: ClassVar[bool] = True

    def validate(self) -> None:
        """Raise ValueError naming the parameter and its allowed range (rules that tie
        parameters together; each parameter's own type and range come from its spec)."""

    def uses_sparse_values(self) -> bool:
        """False when merge_tensor reads only the sparsifier's keep-masks (then the walk skips
        writing the sparsified, rescaled task vectors)."""
        return True

    def fit(
        self,
        family: ModelFamily,
        sparsifier: Sparsifier | None,
        *,
        device: str | torch.device = "auto",
    ) -> None:
        """A first pass over the family, for methods that need the whole model (default: none)."""

    def merge_tensor(self, tensor: SparsifiedTensor) -> torch.Tensor:
        raise NotImplementedError

    def new_result(self, family: ModelFamily, sparsifier: Sparsifier | None) -> MergeResult:
        return MergeResult(self.name, self.get_params(), sparsifier, family)

    def get_params(self) -> dict[str, object]:
        """The constructor's parameters, as set: ``type(m)(**m.get_params())`` rebuilds ``m``."""
        return get_params(self)

    def __repr__(self) -> str:
        return describe(self)


@dataclass
class MergeResult:
    """The merged model: merged tensors in memory, base tensors for everything not merged."""

    method: str
    params: dict[str, object]
    sparsifier: Sparsifier | None
    family: ModelFamily
    merged: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> float32 merged weight
    kept: dict[str, int] = field(default_factory=dict)  # task -> entries kept by the sparsifier
    total: int = 0  # entries per task vector
    # False: one model (model_for); True: a folder of parts, written by write_parts (EMR)
    writes_parts: ClassVar[bool] = False

    def add(self, tensor: SparsifiedTensor, merged_delta: torch.Tensor) -> None:
        self.merged[tensor.name] = (tensor.base + merged_delta).cpu()

    def sparsity(self) -> dict[str, float]:
        """Per task, the fraction of task-vector entries the sparsifier dropped."""
        if not self.kept or self.total == 0:
            return dict.fromkeys(self.family.task_names, 0.0)
        return {task: 1.0 - kept / self.total for task, kept in self.kept.items()}

    def merged_tensor(self, task: str, name: str) -> torch.Tensor:
        """The float32 merged weight of one tensor (task matters only for EMR)."""
        return self.merged[name]

    def is_merged(self, name: str) -> bool:
        return name in self.merged

    def model_for(
        self, task: str | None = None, *, dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """Full state dict (base keys) of the model to use for ``task``: in the base's dtypes, or
        every floating-point tensor in ``dtype`` (integer buffers always keep theirs)."""
        return dict(self.iter_model(task, dtype=dtype))

    def iter_model(
        self, task: str | None = None, *, dtype: torch.dtype | None = None
    ) -> Iterator[tuple[str, torch.Tensor]]:
        """``model_for``'s (name, tensor) pairs one at a time (a writer holds one, not all)."""
        for name in self.family.base.keys():
            if self.is_merged(name):
                target = output_dtype(self.family.base.dtype(name), dtype)
                yield name, self.merged_tensor(task or "", name).to(target)
            else:
                yield name, output_tensor(self.family.base.get(name), dtype)

    @property
    def context(self) -> str:
        """The parameters that produced the merge, for messages (the writer's guard quotes
        it): ``method ties(scaling=1.0, ...), sparsifier magnitude(density=0.2, ...)``."""

        def named(name: str, params: dict[str, object]) -> str:
            return f"{name}({', '.join(f'{key}={value!r}' for key, value in params.items())})"

        sparsifier = self.sparsifier
        used = "none" if sparsifier is None else named(sparsifier.name, sparsifier.get_params())
        return f"method {named(self.method, self.params)}, sparsifier {used}"

    def describe(self) -> dict[str, object]:
        """Provenance strings for the written checkpoint's metadata."""
        return {
            "method": self.method,
            "method_params": self.params,
            "sparsifier": None if self.sparsifier is None else self.sparsifier.name,
            "sparsifier_params": None if self.sparsifier is None else self.sparsifier.get_params(),
            "tasks": self.family.task_names,
        }

    def save(self, out_dir: str | Path, **write_options) -> Path:
        return save_result(self, out_dir, **write_options)

    def write_from_walks(self, walk: Walk, out_dir: Path, **write_options) -> Path:
        """Merge by ``walk`` and write (``merge_to_folder`` for a method that does not stream):
        here in memory, then ``save``; EMR walks twice instead and holds no model."""
        for tensor, merged in walk(False):
            self.add(tensor, merged)
        return self.save(out_dir, **write_options)


def count_kept(keep_masks: torch.Tensor) -> list[int]:
    """True entries of each task's mask in a (K, *shape) stack (numpy's count on a CPU is 20x
    faster than torch's count over a bool dimension)."""
    per_task = keep_masks.reshape(len(keep_masks), -1)  # (K, n); a 0-d tensor's stack is (K,)
    if keep_masks.is_cuda:
        return torch.count_nonzero(per_task, dim=1).tolist()
    return [int(np.count_nonzero(mask.numpy())) for mask in per_task]


def sparsify_tensor(
    tensor: TensorTaskVectors,
    sparsifier: Sparsifier | None,
    task_names: list[str],
    *,
    values: bool = True,
    buffers: WalkBuffers | None = None,
) -> SparsifiedTensor:
    """Sparsify each task's slice of one tensor (``values=False``: the keep-masks only;
    ``buffers``: the masks and sparse values are reused buffers, see ``iter_task_vectors``)."""
    if sparsifier is None:
        return SparsifiedTensor(
            tensor.name, tensor.base, tensor.task_vectors, tensor.task_vectors, None, task_names
        )
    stack = tensor.task_vectors
    if buffers is None:
        keep_masks = torch.empty_like(stack, dtype=torch.bool)
        sparse = torch.empty_like(stack) if values else stack
    else:
        keep_masks = buffers.get("keep_masks", tuple(stack.shape), torch.bool, stack.device)
        sparse = (
            buffers.get("sparse", tuple(stack.shape), stack.dtype, stack.device)
            if values
            else stack
        )
    for index, task in enumerate(task_names):
        tau, where = tensor.task_vectors[index], {"name": tensor.name, "task": task}
        if values:
            sparsifier.sparsify_into(tau, keep_masks[index], sparse[index], **where)
        else:
            sparsifier.keep_mask_into(tau, keep_masks[index], **where)
    return SparsifiedTensor(
        tensor.name, tensor.base, tensor.task_vectors, sparse, keep_masks, task_names
    )


def iter_sparsified(
    family: ModelFamily,
    sparsifier: Sparsifier | None,
    *,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    values: bool = True,
    fit: bool = True,
    buffers: WalkBuffers | None = None,
) -> Iterator[SparsifiedTensor]:
    """Walk the family, yielding each tensor's sparsified task vectors; fits global scope first
    (``fit=False``: it was fitted already). ``values=False``: only the keep-masks are computed
    (``sparse`` is the task vectors). ``buffers``: every (K, *shape) stack is a reused buffer,
    valid only until the next tensor is asked for."""
    from tadrop.task_vectors import iter_task_vectors

    if sparsifier is not None:
        validate_params(sparsifier)
        if sparsifier.needs_fit and fit:
            sparsifier.fit(family, device=device)
    total = len(family.tensor_names)
    walk = iter_task_vectors(family, device=device, buffers=buffers)
    for done, tensor in enumerate(walk):
        if cancel is not None and cancel.is_set():
            raise MergeCancelled("The merge was cancelled; nothing was written.")
        yield sparsify_tensor(tensor, sparsifier, family.task_names, values=values, buffers=buffers)
        if progress is not None:
            progress(done + 1, total, tensor.name)
        del tensor  # not held while the next tensor is read (see iter_merged)


def _prepare(method: MergeMethod, sparsifier: Sparsifier | None) -> Sparsifier | None:
    validate_params(method)
    if sparsifier is None and method.default_sparsifier is not None:
        return method.default_sparsifier()
    return sparsifier


def iter_merged(
    family: ModelFamily,
    method: MergeMethod,
    result: MergeResult,
    *,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    again: bool = False,
) -> Iterator[tuple[SparsifiedTensor, object]]:
    """Walk the family, yielding (tensor, method output) and counting kept entries in ``result``.
    ``again``: a second walk of the same merge (the same outputs: method and sparsifier are
    deterministic and already fitted, the entries already counted)."""
    if not again:
        method.fit(family, result.sparsifier, device=device)
    for tensor in iter_sparsified(
        family,
        result.sparsifier,
        device=device,
        progress=progress,
        cancel=cancel,
        values=method.uses_sparse_values(),
        fit=not again,
        buffers=WalkBuffers(),  # nothing below holds a tensor past its turn
    ):
        if not again:
            count_entries(result, tensor)
        merged = method.merge_tensor(tensor)
        check_merged_finite(tensor.name, merged, result.context)
        yield tensor, merged
        # a loop variable lives until the next item replaces it: drop this tensor's stacks
        # before the next are made, or two tensors' worth would be held at once
        del tensor, merged


def count_entries(result: MergeResult, tensor: SparsifiedTensor) -> None:
    """Add one tensor's entries, and those each task's keep-mask kept, to ``result``."""
    result.total += tensor.task_vectors[0].numel()
    if tensor.keep_masks is not None:
        kept = count_kept(tensor.keep_masks)
        for task, count in zip(result.family.task_names, kept, strict=True):
            result.kept[task] = result.kept.get(task, 0) + int(count)


class NonFiniteMergeError(ValueError):
    """A merged tensor holds NaN or Inf; nothing is written (the last guard before the writer)."""


def check_merged_finite(name: str, merged: object, context: str) -> None:
    """NonFiniteMergeError naming the tensor and the parameters when the merge made NaN/Inf
    (finite inputs and finite parameters can still overflow float32)."""
    delta = merged[0] if isinstance(merged, tuple) else merged  # EMR: the unified vector
    if not isinstance(delta, torch.Tensor) or count_nonfinite(delta) == 0:
        return
    raise NonFiniteMergeError(
        f"The merged tensor {name!r} holds NaN or Inf values ({context}); "
        "nothing was written. Check the parameters (a scaling or weight too large?) and the inputs."
    )


def run_merge(
    family: ModelFamily,
    method: MergeMethod,
    sparsifier: Sparsifier | None = None,
    *,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> MergeResult:
    """Merge a whole family in memory (merged tensors kept on the CPU in float32)."""
    result = method.new_result(family, _prepare(method, sparsifier))
    with keep_scratch_memory():  # each tensor's temporaries reuse the last one's pages
        for tensor, merged in iter_merged(
            family, method, result, device=device, progress=progress, cancel=cancel
        ):
            result.add(tensor, merged)
            del tensor, merged  # see iter_merged
    return result


def stack_weights(
    weights: dict[str, float] | None, task_names: list[str], device: torch.device
) -> torch.Tensor:
    """Per-task weights as a (K,) tensor; missing tasks weigh 1, unknown names are an error."""
    weights = weights or {}
    unknown = sorted(set(weights) - set(task_names))
    if unknown:
        raise ValueError(
            f"Task weights name unknown task(s) {unknown}; the tasks are {task_names}."
        )
    return torch.tensor([float(weights.get(task, 1.0)) for task in task_names], device=device)


def broadcast_weights(weights: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape (K,) weights to broadcast against a (K, *shape) stack."""
    return weights.reshape((-1,) + (1,) * (like.dim() - 1))

"""Writing merge results: one Hugging Face style folder, or a folder of parts (EMR's task
models and compact artifact).

What to write is the result's business (``MergeResult.write_parts``, which EMR overrides);
this module only stages, names and provenances the files, so it imports no merge method.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from tadrop.io import write_checkpoint
from tadrop.io.atomic import atomic_dir
from tadrop.io.safetensors_format import TensorSpec
from tadrop.io.writer import check_not_over_inputs, tadrop_version

if TYPE_CHECKING:
    from tadrop.io.checkpoint import Checkpoint

# write_model(subfolder, extra provenance, (name, tensor) pairs): one model under the staging folder
WriteModel = Callable[[str, dict[str, object], Iterable[tuple[str, torch.Tensor]]], None]
# walk(again): one walk of a merge over its family, yielding (tensor, the method's output);
# again=True: the same walk once more (nothing fitted or counted twice)
Walk = Callable[[bool], Iterator[tuple[Any, Any]]]


class SavableResult(Protocol):
    family: Any
    writes_parts: bool

    def describe(self) -> dict[str, object]: ...

    def model_for(
        self, task: str | None = None, *, dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]: ...

    def iter_model(
        self, task: str | None = None, *, dtype: torch.dtype | None = None
    ) -> Iterator[tuple[str, torch.Tensor]]: ...

    def write_parts(
        self,
        staging: Path,
        write_model: WriteModel,
        *,
        dtype: torch.dtype | None,
        tasks: list[str] | None,
    ) -> None: ...


def output_dtype(stored: torch.dtype, dtype: torch.dtype | None) -> torch.dtype:
    """The dtype a tensor stored as ``stored`` is written in: floats in ``dtype`` when given."""
    return dtype if dtype is not None and stored.is_floating_point else stored


def output_tensor(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``tensor`` as written to an output checkpoint: floats in ``dtype`` when one is given."""
    return tensor.to(output_dtype(tensor.dtype, dtype))


def output_plan(base: Checkpoint, dtype: torch.dtype | None, names: list[str]) -> list[TensorSpec]:
    """The ``TensorSpec`` of each ``base`` tensor in ``names`` as an output model stores it (for
    ``tadrop.io.writer.planned_checkpoint``, which then holds no tensor)."""
    return [
        TensorSpec(name, output_dtype(base.dtype(name), dtype), tuple(base.shape(name)))
        for name in names
    ]


def provenance(result: SavableResult, extra: dict | None = None) -> dict[str, str]:
    """The checkpoint metadata: method, parameters, tasks, tadrop version (strings)."""
    description = {**result.describe(), **(extra or {})}
    description["tadrop_version"] = tadrop_version()
    return {
        key: value if isinstance(value, str) else json.dumps(value, default=str)
        for key, value in description.items()
    }


def input_paths(result: SavableResult) -> list[Path]:
    return [
        result.family.base.source,
        *(checkpoint.source for checkpoint in result.family.tasks.values()),
    ]


@contextmanager
def staged_dir(out_dir: Path, *, overwrite: bool, inputs: Iterable[object] = ()) -> Iterator[Path]:
    """``tadrop.io.atomic.atomic_dir`` after refusing an output over one of the ``inputs``."""
    check_not_over_inputs(out_dir, list(inputs))
    with atomic_dir(out_dir, overwrite=overwrite) as staging:
        yield staging


def save_result(
    result: SavableResult,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    max_shard_bytes: int = 5 * 2**30,
    dtype: torch.dtype | None = None,
    tasks: list[str] | None = None,
) -> Path:
    """Write the merged model to ``out_dir`` atomically; a result that ``writes_parts`` (EMR:
    one model per task, ``tasks`` limits which, and/or its compact artifact) fills a folder."""
    out_dir = Path(out_dir).expanduser().absolute()
    options = dict(
        aux_dir=result.family.base.aux_dir,
        max_shard_bytes=max_shard_bytes,
        input_paths=input_paths(result),
        context=result.context,
        # every model written here has the base's tensors in its order: nothing is held
        plan=output_plan(result.family.base, dtype, result.family.base.keys()),
    )
    if not result.writes_parts:
        tensors = result.iter_model(dtype=dtype)
        return write_checkpoint(
            tensors, out_dir, metadata=provenance(result), overwrite=overwrite, **options
        )
    with staged_dir(out_dir, overwrite=overwrite, inputs=options["input_paths"]) as staging:

        def write_model(part: str, extra: dict, tensors: Iterable[tuple[str, torch.Tensor]]):
            metadata = provenance(result, extra)
            write_checkpoint(tensors, staging / part, metadata=metadata, **options)

        result.write_parts(staging, write_model, dtype=dtype, tasks=tasks)
    return out_dir

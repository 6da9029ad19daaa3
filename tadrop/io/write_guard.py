"""The checks every tensor passes on its way into an output checkpoint: a usable name, a dense
tensor, finite values, and a cast to the output dtype that does not overflow."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tadrop.io.errors import CheckpointError, count_nonfinite


@dataclass(frozen=True)
class WriteGuard:
    """How tensors are checked and cast on their way to `where` (the output, for messages)."""

    where: str
    dtype: torch.dtype | None = None
    context: str | None = None  # the parameters that produced the tensors, for messages
    finite_only: bool = True


def prepared(name: object, tensor: object, guard: WriteGuard) -> torch.Tensor:
    """The tensor as it will be stored: checked, cast to `guard.dtype` if floating, on CPU."""
    if not isinstance(name, str) or not name or name == "__metadata__":
        raise CheckpointError(f"tensor name {name!r} is not allowed; use a non-empty string.")
    if not isinstance(tensor, torch.Tensor):
        raise CheckpointError(f"{name!r}: got a {type(tensor).__name__}, expected a tensor.")
    if tensor.layout != torch.strided:
        raise CheckpointError(f"{name!r}: layout {tensor.layout}; convert with .to_dense().")
    n_bad = count_nonfinite(tensor)
    if n_bad and guard.finite_only:
        raise _nonfinite_error(name, tensor, n_bad, guard)
    dtype = guard.dtype
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        cast = tensor.to(dtype)
        if count_nonfinite(cast) > n_bad:
            raise _range_error(name, tensor, dtype, guard)
        tensor = cast
    return tensor.detach().cpu().contiguous()


def _made_by(guard: WriteGuard) -> str:
    return f" It was made by: {guard.context}." if guard.context else ""


def _nonfinite_error(
    name: str, tensor: torch.Tensor, n_bad: int, guard: WriteGuard
) -> CheckpointError:
    narrow = tensor.dtype in (torch.float16, torch.bfloat16)
    range_hint = f" ({tensor.dtype} turns values beyond its range into Inf: write float32)"
    return CheckpointError(
        f"{guard.where}: tensor {name!r} has {n_bad} NaN/Inf value(s) out of {tensor.numel()}; "
        f"refusing to write a broken model.{_made_by(guard)} Check the parameters (scaling, "
        "weights, epsilon) for NaN, Inf or extreme values, and the inputs for NaN/Inf"
        f"{range_hint if narrow else ''} (pass finite_only=False to write it anyway)."
    )


def _range_error(
    name: str, tensor: torch.Tensor, dtype: torch.dtype, guard: WriteGuard
) -> CheckpointError:
    largest = float(tensor[torch.isfinite(tensor)].abs().max())
    return CheckpointError(
        f"{guard.where}: tensor {name!r} holds values up to {largest:.4g} in magnitude, beyond "
        f"the range of {dtype} (largest {torch.finfo(dtype).max:.4g}); they would be written as "
        f"Inf.{_made_by(guard)} Write in float32 (output dtype float32) or reduce the scaling."
    )

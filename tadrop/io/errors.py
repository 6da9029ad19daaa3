"""The error every checkpoint problem is reported with, and a finiteness check for callers."""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint cannot be read or written; the message names the file, the tensor and the fix."""


def count_nonfinite(tensor: torch.Tensor) -> int:
    """How many entries are NaN or Inf, in one read pass when there are none: a NaN or Inf
    entry makes the sum NaN or Inf, so a finite sum means zero; only a non-finite sum (some
    such entry, or finite entries overflowing the sum) runs the exact elementwise count."""
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return 0
    if bool(torch.isfinite(tensor.sum())):
        return 0
    return tensor.numel() - int(torch.count_nonzero(torch.isfinite(tensor)))


def check_finite(name: str, tensor: torch.Tensor, source: str | Path) -> None:
    """Raise CheckpointError if `tensor` (called `name`, read from `source`) holds NaN or Inf."""
    n_bad = count_nonfinite(tensor)
    if n_bad:
        raise CheckpointError(
            f"{source}: tensor {name!r} has {n_bad} NaN/Inf value(s) out of {tensor.numel()}. "
            "The checkpoint is damaged or the fine-tuning diverged; re-export or retrain it, "
            "or exclude this tensor."
        )


def empty_tensor_error(name: str, shape: tuple[int, ...], source: str | Path) -> CheckpointError:
    """The message for a tensor with no elements (shape with a 0), naming file and tensor."""
    return CheckpointError(
        f"{source}: tensor {name!r} has shape {tuple(shape)}, no elements, so there is nothing "
        f"to merge or measure in it. Leave it out (exclude: '^{re.escape(name)}$' in the config, "
        "or --exclude on the command line) or re-export the checkpoint if it should hold values."
    )


def check_not_empty(name: str, shape: tuple[int, ...], source: str | Path) -> None:
    """Raise `empty_tensor_error` if `shape` has no elements (0-d tensors hold one and pass)."""
    if math.prod(shape) == 0:
        raise empty_tensor_error(name, shape, source)

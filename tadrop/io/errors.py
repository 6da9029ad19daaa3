"""The error every checkpoint problem is reported with, and a finiteness check for callers."""

from __future__ import annotations

from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint cannot be read or written; the message names the file, the tensor and the fix."""


def check_finite(name: str, tensor: torch.Tensor, source: str | Path) -> None:
    """Raise CheckpointError if `tensor` (called `name`, read from `source`) holds NaN or Inf."""
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return
    n_bad = tensor.numel() - int(torch.count_nonzero(torch.isfinite(tensor)))
    if n_bad:
        raise CheckpointError(
            f"{source}: tensor {name!r} has {n_bad} NaN/Inf value(s) out of {tensor.numel()}. "
            "The checkpoint is damaged or the fine-tuning diverged; re-export or retrain it, "
            "or exclude this tensor."
        )

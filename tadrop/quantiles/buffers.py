"""Reused per-thread scratch buffers (fresh large allocations are slow on some machines)."""

from __future__ import annotations

import math
import threading

import numpy as np
import torch

from tadrop.quantiles import settings

_TORCH_OF = {np.dtype(np.float32).str: torch.float32, np.dtype(np.float64).str: torch.float64}


class ScratchBuffers(threading.local):
    """One thread's buffers: a uint8 byte mask for the counting pass and up to three value copies
    for the numpy route. They grow to the largest tensor seen; ``release`` frees them."""

    def __init__(self) -> None:
        self.byte_mask: torch.Tensor | None = None
        self.value_copies: dict[tuple[int, str], np.ndarray] = {}

    def bytes(self, numel: int) -> torch.Tensor:
        """A reused uint8 buffer of ``numel`` entries."""
        if self.byte_mask is None or self.byte_mask.numel() < numel:
            self.byte_mask = torch.empty(numel, dtype=torch.uint8)
        return self.byte_mask[:numel]

    def values(self, numel: int, dtype: np.dtype, slot: int) -> np.ndarray:
        """Reused numpy buffers (slots 0-2) for the numpy route: numpy's fresh
        allocations fault in every page (~1.5 ms for 6 MB here, as long as the work itself).
        Only up to SORT_MAX_NUMEL entries are kept (at most 3 x 16 MB a thread)."""
        if numel > settings.SORT_MAX_NUMEL:
            return np.empty(numel, dtype=dtype)
        key = (slot, np.dtype(dtype).str)
        buffer = self.value_copies.get(key)
        if buffer is None or buffer.size < numel:
            buffer = torch.empty(numel, dtype=_TORCH_OF[key[1]]).numpy()
            self.value_copies[key] = buffer
        return buffer[:numel]

    def release(self) -> None:
        self.byte_mask = None
        self.value_copies = {}


SCRATCH = ScratchBuffers()


def release_buffers() -> None:
    """Free this thread's reused scratch buffers (they grow to the largest tensor seen)."""
    SCRATCH.release()


class WalkBuffers:
    """Grow-only flat tensors handed out as views shaped like each tensor of one walk over a
    family: a walk that drops each tensor's (K, *shape) stacks before the next is made reuses
    memory it has already touched, instead of faulting in (and zeroing) fresh pages for every
    tensor, which was a fifth of a merge's CPU time. A view is valid until the same ``role``
    is asked for again."""

    def __init__(self) -> None:
        self._flat: dict[str, torch.Tensor] = {}

    def get(
        self, role: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        numel = math.prod(shape)
        flat = self._flat.get(role)
        if flat is None or flat.numel() < numel or flat.dtype != dtype or flat.device != device:
            self._flat.pop(role, None)  # the old one is freed before the bigger one is made
            flat = self._flat[role] = torch.empty(numel, dtype=dtype, device=device)
        return flat[:numel].view(shape)

"""A Hugging Face model built once from the base folder, into which each scored state dict is
copied in place: merged models are evaluated in memory, never written to disk first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tadrop.evaluate.scores import EvaluationError, StateDict
from tadrop.io import open_checkpoint
from tadrop.task_vectors import resolve_device


def load_dtype(device: torch.device) -> torch.dtype | str:
    """float32 on the CPU (half precision is slow and inexact there), the checkpoint's own
    dtype ("auto") on an accelerator."""
    return torch.float32 if device.type == "cpu" else "auto"


class InMemoryModel:
    """``loader(folder)`` -> module of the base folder; ``load(state_dict)`` overwrites its
    tensors with the given ones (names as in the base's checkpoint files).

    Tied weights (an LM head sharing the embedding) are one tensor under several names; any of
    them may be given. Floating-point tensors a state dict leaves out are taken from the base
    checkpoint, so every call scores exactly ``base + state_dict``.
    """

    def __init__(
        self, folder: str | Path, loader: Callable[..., torch.nn.Module], device: str = "auto"
    ) -> None:
        self.folder = Path(folder)
        self.device = resolve_device(device)
        module = loader(str(self.folder), dtype=load_dtype(self.device))
        self.module = module.eval().to(self.device)
        self._tensors: dict[str, torch.Tensor] = {}
        self._aliases: dict[str, list[str]] = {}
        first_name: dict[int, str] = {}
        for name, tensor in self.module.state_dict(keep_vars=True).items():
            canonical = first_name.setdefault(id(tensor), name)
            self._tensors.setdefault(canonical, tensor)
            self._aliases.setdefault(canonical, []).append(name)
        self._canonical = {
            alias: canonical for canonical, names in self._aliases.items() for alias in names
        }
        self._changed: set[str] = set()  # canonical names no longer holding the base's values
        self._checkpoint: Any = None  # the base's files, opened when a tensor must be restored

    def load(self, state_dict: StateDict) -> torch.nn.Module:
        """The module holding ``state_dict`` (other float tensors: the base's)."""
        unknown = [name for name in state_dict if name not in self._canonical]
        if unknown:
            raise EvaluationError(
                f"tensors {unknown[:3]} ({len(unknown)} in all) are not in the model of "
                f"{self.folder}; merge checkpoints of this architecture, with its tensor names."
            )
        given = {self._canonical[name]: tensor for name, tensor in state_dict.items()}
        restore = {name: self._base_tensor(name) for name in self._changed - set(given)}
        with torch.no_grad():
            for name, tensor in {**given, **restore}.items():
                target = self._tensors[name]
                if tuple(tensor.shape) != tuple(target.shape):
                    raise EvaluationError(
                        f"tensor {name!r} has shape {tuple(tensor.shape)}, but the model of "
                        f"{self.folder} expects {tuple(target.shape)}."
                    )
                target.copy_(tensor.to(device=target.device, dtype=target.dtype))
        self._changed = {name for name in given if self._tensors[name].is_floating_point()}
        return self.module

    def _base_tensor(self, canonical: str) -> torch.Tensor:
        if self._checkpoint is None:
            self._checkpoint = open_checkpoint(self.folder)
        checkpoint = self._checkpoint
        names = [alias for alias in self._aliases[canonical] if alias in checkpoint.keys()]
        if not names:
            raise EvaluationError(
                f"the state dict leaves out {canonical!r} and {self.folder} does not hold it; "
                "pass every tensor of the model."
            )
        return checkpoint.get(names[0])

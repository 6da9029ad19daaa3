"""One file of named tensors: a safetensors file (memory-mapped) or a torch pickle (.bin/.pt/.pth).

A checkpoint is one or more of these files (shards); `checkpoint.py` puts them together.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import torch
from safetensors import safe_open

from tadrop.io.errors import CheckpointError
from tadrop.io.safetensors_format import read_header

# Keys under which training code commonly nests the state dict, tried in this order.
WRAPPER_KEYS = ("state_dict", "model", "module")


class TensorFile(Protocol):
    path: Path
    metadata: dict[str, str]

    def keys(self) -> list[str]: ...
    def shape(self, name: str) -> tuple[int, ...]: ...
    def dtype(self, name: str) -> torch.dtype: ...
    def get(self, name: str) -> torch.Tensor: ...
    def close(self) -> None: ...


class SafetensorsFile:
    """A safetensors file: shapes and dtypes from its header, tensors read one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        header = read_header(path)
        self._entries = header.entries
        self.metadata = header.metadata
        self._closed = False
        self._open_mapping()  # let safetensors run its own checks now (gaps between tensors, ...)

    def _open_mapping(self):
        try:
            return safe_open(str(self.path), framework="pt", device="cpu")
        except Exception as err:
            raise CheckpointError(
                f"{self.path}: safetensors refused the file ({err}); export or download it again."
            ) from None

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name].shape

    def dtype(self, name: str) -> torch.dtype:
        return self._entries[name].dtype

    def get(self, name: str) -> torch.Tensor:
        if self._closed:
            raise CheckpointError(f"{self.path}: read after close(); open the checkpoint again.")
        # Tensors from one safe_open handle are views of one private mapping, so an in-place edit
        # of one returned tensor would show in the next get of it. A mapping per call (costs a
        # header parse, ~0.5 us per tensor in the file) keeps every returned tensor independent
        # and still zero-copy: pages are read from the file when touched, copied when written.
        return self._open_mapping().get_tensor(name)

    def close(self) -> None:
        self._closed = True


def _non_tensor_objects_error(path: Path, refused: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: the file contains non-tensor Python objects ({refused}) that "
        "torch.load(weights_only=True) refuses to unpickle, because unpickling "
        "them can run arbitrary code. If you trust the file, convert it once to safetensors:\n"
        "  import torch; from safetensors.torch import save_file\n"
        f"  sd = torch.load({str(path)!r}, map_location='cpu', weights_only=False)\n"
        "  sd = sd.state_dict() if hasattr(sd, 'state_dict') else sd.get('state_dict', sd)\n"
        "  save_file({k: v.contiguous() for k, v in sd.items()}, 'model.safetensors')\n"
        "and pass the .safetensors file instead."
    )


def _load_pickle(path: Path) -> object:
    # mmap only works for the zip format torch.save has used since 1.6; older files load whole.
    use_mmap = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as err:
        # weights_only names the first class or function it would have had to import.
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if refused:
            raise _non_tensor_objects_error(path, refused[1]) from None
        problem = err
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, ... on bad files
        problem = err
    raise CheckpointError(
        f"{path}: cannot be read as a PyTorch checkpoint ({type(problem).__name__}). The file "
        "is truncated, corrupt or not a torch.save file; export or download it again."
    ) from None


def _unwrap(obj: object) -> object:
    """{"state_dict": sd, "epoch": 3, ...} -> sd, as long as no tensor sits beside the wrapper."""
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        wrapper = next((key for key in WRAPPER_KEYS if isinstance(obj.get(key), Mapping)), None)
        if wrapper is None:
            break
        obj = obj[wrapper]
    return obj


def _flatten(path: Path, mapping: Mapping, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Nested dicts of tensors become flat names joined with '.'."""
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise CheckpointError(
                f"{path}: entry {prefix}{key!r} has a {type(key).__name__} key; a checkpoint must "
                "map tensor names (strings) to tensors. Save model.state_dict() instead."
            )
        name = prefix + key
        if isinstance(value, Mapping):
            _flatten(path, value, name + ".", out)
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor. tadrop reads "
                "files holding only tensors, optionally under 'state_dict', 'model' or 'module'; "
                "save model.state_dict() instead."
            )
        if value.layout != torch.strided:
            raise CheckpointError(
                f"{path}: tensor {name!r} has layout {value.layout}; convert it with .to_dense()."
            )
        if name in out:
            raise CheckpointError(f"{path}: tensor name {name!r} occurs twice after flattening.")
        out[name] = value


class TorchFile:
    """A torch.save'd state dict, memory-mapped when the file format allows it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metadata: dict[str, str] = {}
        loaded = _unwrap(_load_pickle(path))
        if not isinstance(loaded, Mapping):
            raise CheckpointError(
                f"{path}: holds a {type(loaded).__name__}, not a mapping of tensor names to "
                "tensors; save model.state_dict() instead."
            )
        self._tensors: dict[str, torch.Tensor] | None = {}
        _flatten(path, loaded, "", self._tensors)
        if not self._tensors:
            raise CheckpointError(f"{path}: holds no tensors.")

    def _open_tensors(self) -> dict[str, torch.Tensor]:
        if self._tensors is None:
            raise CheckpointError(f"{self.path}: read after close(); open the checkpoint again.")
        return self._tensors

    def keys(self) -> list[str]:
        return list(self._open_tensors())

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._open_tensors()[name].shape)

    def dtype(self, name: str) -> torch.dtype:
        return self._open_tensors()[name].dtype

    def get(self, name: str) -> torch.Tensor:
        # A copy the caller owns: in-place edits must not reach the cached (shared, tied) tensors.
        return self._open_tensors()[name].detach().clone(memory_format=torch.contiguous_format)

    def close(self) -> None:
        self._tensors = None

"""One file of named tensors: a safetensors file (memory-mapped) or a torch pickle (.bin/.pt/.pth).

A checkpoint is one or more of these files (shards); `checkpoint.py` puts them together.
"""

from __future__ import annotations

import contextlib
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import torch
from safetensors import safe_open

from tadrop.io.confine import check_readable
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
        check_readable(path, "weights file")
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
        f"{path}: refused for safety: besides tensors the file holds code or non-tensor Python "
        f"objects ({refused}), and loading those could run arbitrary code. tadrop loads only tensors "
        "(torch.load(weights_only=True)). If you trust the file, convert it once, in a trusted "
        "environment, to safetensors and pass that file instead:\n"
        "  import torch; from safetensors.torch import save_file\n"
        f"  save_file({{k: v.contiguous() for k, v in torch.load({str(path)!r}, "
        "weights_only=False).items()}, 'model.safetensors')\n"
        "(for a training checkpoint, take its 'state_dict' entry, or model.state_dict(), first)."
    )


# "Unsupported global: GLOBAL m.f" (torch <= 2.5), "unsupported GLOBAL m.f whose module ..." (2.6+)
_REFUSED_GLOBAL = re.compile(r"unsupported global:? (?:GLOBAL )?([\w.]+)", re.IGNORECASE)
_TORCH_GLOBALS = ("torch.", "collections.OrderedDict")  # what a plain state dict imports
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"}


def _pickle_globals(path: Path) -> list[str]:
    """The `module.name`s the file's pickles import, read with pickletools (nothing is run)."""
    found: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            if zipfile.is_zipfile(path):
                archive = stack.enter_context(zipfile.ZipFile(path))
                member = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                stream = stack.enter_context(archive.open(member))
            else:
                stream = stack.enter_context(open(path, "rb"))
            for _ in range(5):  # the legacy format is a few pickles in a row
                strings: list[str] = []
                for opcode, arg, _ in pickletools.genops(stream):
                    if opcode.name == "GLOBAL":
                        found.append(str(arg).replace(" ", "."))
                    elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(".".join(strings[-2:]))
                    elif opcode.name in _STRING_OPS:
                        strings.append(str(arg))
    except Exception:  # noqa: BLE001 - a damaged pickle: report what was found up to there
        pass
    return found


def _unpickling_refused(path: Path, error: Exception) -> CheckpointError | None:
    """The safety refusal of a pickle that imports code, or None if the file is just damaged."""
    named = _REFUSED_GLOBAL.search(str(error))
    if named:
        return _non_tensor_objects_error(path, named[1])
    unsafe = [name for name in _pickle_globals(path) if not name.startswith(_TORCH_GLOBALS)]
    if unsafe:
        return _non_tensor_objects_error(path, ", ".join(dict.fromkeys(unsafe)))
    return None


def _load_pickle(path: Path) -> object:
    # mmap only works for the zip format torch.save has used since 1.6; older files load whole.
    use_mmap = zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings():  # our message below replaces torch's protocol warning
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as err:
        refused = _unpickling_refused(path, err)
        if refused is not None:
            raise refused from None
        problem: Exception = err
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
        check_readable(path, "weights file")
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

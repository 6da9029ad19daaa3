"""`Checkpoint`: a read-only set of named tensors that are read one at a time, on request."""

from __future__ import annotations

import difflib
import math
from abc import ABC, abstractmethod
from pathlib import Path

import torch

from tadrop.io.errors import CheckpointError, check_not_empty
from tadrop.io.tensor_files import TensorFile


class Checkpoint(ABC):
    """A model's tensors by name; `get` reads one tensor (CPU, stored dtype) when asked.

    Attributes: `source` (the path it was opened from), `format` (e.g. "safetensors",
    "safetensors-sharded", "torch", "torch-sharded", "peft-lora"), `metadata` (strings stored
    with the tensors), `aux_dir` (folder whose config.json/tokenizer files belong to the model).
    """

    source: Path
    format: str
    metadata: dict[str, str]
    aux_dir: Path | None

    @abstractmethod
    def keys(self) -> list[str]:
        """Tensor names, in the order the files list them (shards in file-name order)."""

    @abstractmethod
    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of tensor `name`, without reading its data."""

    @abstractmethod
    def dtype(self, name: str) -> torch.dtype:
        """Stored dtype of tensor `name`, without reading its data."""

    @abstractmethod
    def get(self, name: str) -> torch.Tensor:
        """Tensor `name` on CPU in its stored dtype; a fresh tensor the caller may modify."""

    @abstractmethod
    def close(self) -> None:
        """Release file handles and memory maps; later reads raise CheckpointError."""

    def location(self, name: str) -> Path:
        """The file tensor `name` is read from (the checkpoint's source if not one file)."""
        return self.source

    def check_not_empty(self, name: str) -> None:
        """CheckpointError naming the file and tensor if tensor `name` has no elements."""
        check_not_empty(name, self.shape(name), self.location(name))

    def nbytes(self, name: str) -> int:
        return math.prod(self.shape(name)) * self.dtype(name).itemsize

    def __contains__(self, name: object) -> bool:
        return name in self.keys()

    def __len__(self) -> int:
        return len(self.keys())

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.source)!r}, format={self.format!r})"

    def _unknown_tensor(self, name: str) -> CheckpointError:
        close = difflib.get_close_matches(name, self.keys(), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "."
        return CheckpointError(
            f"{self.source}: has no tensor named {name!r} ({len(self.keys())} tensors){hint}"
        )


class FileCheckpoint(Checkpoint):
    """A checkpoint stored in one file or in shards, each tensor in exactly one file."""

    def __init__(
        self,
        source: Path,
        format: str,
        files: list[TensorFile],
        *,
        metadata: dict[str, str] | None = None,
        aux_dir: Path | None = None,
    ) -> None:
        self.source = source
        self.format = format
        self.aux_dir = aux_dir
        self._files = files
        self._file_of: dict[str, TensorFile] = {}
        for tensor_file in files:
            for name in tensor_file.keys():
                if name in self._file_of:
                    self.close()
                    raise CheckpointError(
                        f"{source}: tensor {name!r} is stored in both "
                        f"{self._file_of[name].path.name} and {tensor_file.path.name}; the shards "
                        "come from different exports. Remove the stray shard or re-export."
                    )
                self._file_of[name] = tensor_file
        self.metadata = {**(files[0].metadata if files else {}), **(metadata or {})}

    def _file(self, name: str) -> TensorFile:
        try:
            return self._file_of[name]
        except KeyError:
            raise self._unknown_tensor(name) from None

    def keys(self) -> list[str]:
        return list(self._file_of)

    def __contains__(self, name: object) -> bool:
        return name in self._file_of

    def shape(self, name: str) -> tuple[int, ...]:
        return self._file(name).shape(name)

    def dtype(self, name: str) -> torch.dtype:
        return self._file(name).dtype(name)

    def get(self, name: str) -> torch.Tensor:
        return self._file(name).get(name)

    def file_of(self, name: str) -> Path:
        """The file tensor `name` is stored in."""
        return self._file(name).path

    location = file_of

    @property
    def files(self) -> list[Path]:
        """The files the tensors are read from."""
        return [tensor_file.path for tensor_file in self._files]

    def close(self) -> None:
        for tensor_file in self._files:
            tensor_file.close()

"""Write models as Hugging Face style safetensors folders, atomically and with provenance."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from tadrop.io.atomic import atomic_dir, write_file_atomically
from tadrop.io.aux_files import copy_aux_files
from tadrop.io.errors import CheckpointError
from tadrop.io.safetensors_format import PlannedFile, TensorSpec, write_safetensors_file
from tadrop.io.write_guard import WriteGuard, prepared
from tadrop.version import __version__

DEFAULT_MAX_SHARD_BYTES = 5 * 2**30
SINGLE_FILE_NAME = "model.safetensors"
INDEX_FILE_NAME = "model.safetensors.index.json"
PathLike = str | os.PathLike


def tadrop_version() -> str:
    """The version written into every checkpoint's metadata (one home: tadrop/version.py)."""
    return __version__


def provenance_metadata(
    metadata: Mapping[str, object] | None, input_paths: Iterable[PathLike] = ()
) -> dict[str, str]:
    """safetensors metadata: the caller's entries (non-strings JSON-encoded) plus provenance."""
    encoded = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str):
            raise CheckpointError(f"metadata key {key!r} is not a string; use string keys.")
        encoded[key] = value if isinstance(value, str) else json.dumps(value, default=str)
    encoded["tadrop_version"] = tadrop_version()
    encoded["input_paths"] = json.dumps([str(Path(p).expanduser().absolute()) for p in input_paths])
    encoded["format"] = "pt"  # what transformers expects in every shard
    return encoded


def _input_path(item: object) -> Path:
    """A path, or a Checkpoint (anything with a `source`)."""
    return Path(getattr(item, "source", item)).expanduser().resolve()


def check_not_over_inputs(
    out_dir: Path, input_paths: Iterable[object], *, allow_inside_inputs: bool = False
) -> None:
    """Refuse an output that would replace, contain or (by default) sit inside an input folder."""
    out = out_dir.expanduser().resolve()
    for item in input_paths:
        source = _input_path(item)
        if source == out or source.is_relative_to(out):
            raise CheckpointError(
                f"{out_dir}: is (or contains) the input {source}; writing there could destroy "
                "the input. Choose another output folder."
            )
        if source.is_dir() and out.is_relative_to(source) and not allow_inside_inputs:
            raise CheckpointError(
                f"{out_dir}: lies inside the input folder {source}; choose an output folder "
                "outside the inputs (or pass allow_inside_inputs=True)."
            )


def _shard_names(count: int) -> list[str]:
    digits = max(5, len(str(count)))
    return [f"model-{i:0{digits}d}-of-{count:0{digits}d}.safetensors" for i in range(1, count + 1)]


def _opens_shard(pending: int, pending_bytes: int, size: int, max_shard_bytes: int) -> bool:
    """The sharding rule: a tensor starts a new shard when the current one holds ``pending``
    tensors and would grow past ``max_shard_bytes`` (so a bigger tensor gets its own)."""
    return pending > 0 and pending_bytes + size > max_shard_bytes


def _finish_shards(
    folder: Path, shard_paths: list[Path], shard_keys: list[list[str]], total_bytes: int
) -> None:
    """Rename the complete shard files to their final names; sharded, write the index
    (``total_bytes``: of tensor data)."""
    if len(shard_paths) == 1:
        os.rename(shard_paths[0], folder / SINGLE_FILE_NAME)
        return
    weight_map = {}
    for path, keys, final_name in zip(
        shard_paths, shard_keys, _shard_names(len(shard_paths)), strict=True
    ):
        os.rename(path, folder / final_name)
        weight_map.update(dict.fromkeys(keys, final_name))
    index = {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
    with open(folder / INDEX_FILE_NAME, "x", encoding="utf-8") as stream:
        json.dump(index, stream, indent=2)
        stream.flush()
        os.fsync(stream.fileno())


def _write_shards(
    tensors: Iterable[tuple[str, torch.Tensor]],
    folder: Path,
    max_shard_bytes: int,
    metadata: dict[str, str],
    guard: WriteGuard,
) -> None:
    """Stream `tensors` into shards of at most `max_shard_bytes` (one bigger tensor: its own)."""
    shard_paths: list[Path] = []
    shard_keys: list[list[str]] = []
    pending: list[tuple[str, torch.Tensor]] = []
    pending_bytes = total_bytes = 0
    seen: set[str] = set()

    def flush() -> None:
        nonlocal pending, pending_bytes
        # The shard count is known only at the end: write under a temporary name.
        path = folder / f"shard-{len(shard_paths) + 1}.partial"
        write_safetensors_file(path, pending, metadata)
        shard_paths.append(path)
        shard_keys.append([name for name, _ in pending])
        pending, pending_bytes = [], 0

    for name, tensor in tensors:
        tensor = prepared(name, tensor, guard)
        if name in seen:
            raise CheckpointError(f"tensor {name!r} was given twice; names must be unique.")
        seen.add(name)
        size = tensor.numel() * tensor.element_size()
        if _opens_shard(len(pending), pending_bytes, size, max_shard_bytes):
            flush()
        pending.append((name, tensor))
        pending_bytes += size
        total_bytes += size
    if not seen:
        raise CheckpointError("no tensors to write; the model is empty.")
    flush()
    _finish_shards(folder, shard_paths, shard_keys, total_bytes)


class PlannedShards:
    """Shards laid out up front from ``plan``: the stored name, dtype and shape of every tensor,
    in the order a plain ``write_checkpoint`` would receive them (same sharding rule, names,
    headers and index, so the files are byte-identical). Each shard file is created with its
    header when its first tensor arrives; ``write`` checks a tensor (the same guards), puts its
    bytes at its offset and keeps nothing, so memory holds the tensor being written, whatever
    the shard size. Tensors may arrive in any order; ``finish`` checks that all came."""

    def __init__(
        self, folder: Path, plan: Sequence[TensorSpec], max_shard_bytes: int,
        metadata: dict[str, str], guard: WriteGuard,
    ) -> None:  # fmt: skip
        self.folder, self.metadata, self.guard = folder, metadata, guard
        self.specs: dict[str, TensorSpec] = {}
        self.shard_of: dict[str, int] = {}
        self.groups: list[list[TensorSpec]] = []
        pending_bytes = 0
        for spec in plan:
            if spec.name in self.specs:
                raise CheckpointError(
                    f"tensor {spec.name!r} is planned twice; names must be unique."
                )
            if not self.groups or _opens_shard(
                len(self.groups[-1]), pending_bytes, spec.nbytes, max_shard_bytes
            ):
                self.groups.append([])
                pending_bytes = 0
            self.groups[-1].append(spec)
            pending_bytes += spec.nbytes
            self.specs[spec.name] = spec
            self.shard_of[spec.name] = len(self.groups) - 1
        if not self.specs:
            raise CheckpointError("no tensors to write; the model is empty.")
        self.paths = [folder / f"shard-{i + 1}.partial" for i in range(len(self.groups))]
        self.open_files: dict[int, PlannedFile] = {}
        self.written: set[str] = set()

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Check ``tensor`` against the guards and the plan, then write it at its offset."""
        tensor = prepared(name, tensor, self.guard)
        spec = self.specs.get(name)
        if spec is None or name in self.written:
            what = "was given twice" if spec else "is not among the tensors announced"
            raise CheckpointError(
                f"{self.guard.where}: tensor {name!r} {what} ({len(self.specs)} planned); "
                "pass the plan the tensors were made from."
            )
        if TensorSpec.of(name, tensor) != spec:
            raise CheckpointError(
                f"{self.guard.where}: tensor {name!r} is {tensor.dtype} of shape "
                f"{tuple(tensor.shape)} but the plan announced {spec.dtype} of shape "
                f"{spec.shape}; pass the plan the tensors were made from."
            )
        index = self.shard_of[name]
        if index not in self.open_files:
            group = self.groups[index]
            self.open_files[index] = PlannedFile(self.paths[index], group, self.metadata)
        shard = self.open_files[index]
        shard.write(name, tensor)
        self.written.add(name)
        if shard.complete:
            shard.close()
            del self.open_files[index]

    def finish(self) -> None:
        """Check that every planned tensor was written, then name the files and the index."""
        missing = [name for name in self.specs if name not in self.written]
        if missing:
            raise CheckpointError(
                f"{self.guard.where}: {len(missing)} planned tensor(s) never came (first: "
                f"{missing[:3]}); the tensors stopped early. Nothing was written."
            )
        keys = [[spec.name for spec in group] for group in self.groups]
        _finish_shards(self.folder, self.paths, keys, sum(s.nbytes for s in self.specs.values()))

    def close(self) -> None:
        """Close what is still open (after an error: the caller removes the folder)."""
        for shard in self.open_files.values():
            shard.abort()
        self.open_files.clear()


@dataclass(frozen=True)
class _Output:
    """A checked output folder: its path, the metadata of its files and the write guard."""

    path: Path
    metadata: dict[str, str]
    guard: WriteGuard


def _output(
    out_dir: PathLike, max_shard_bytes: int, metadata: Mapping[str, object] | None,
    input_paths: Iterable[object], allow_inside_inputs: bool, guard: Mapping[str, object],
) -> _Output:  # fmt: skip
    out_dir = Path(out_dir).expanduser().absolute()
    input_paths = list(input_paths)
    if not isinstance(max_shard_bytes, int) or max_shard_bytes <= 0:
        raise CheckpointError(
            f"max_shard_bytes must be a positive integer, got {max_shard_bytes!r}"
        )
    check_not_over_inputs(out_dir, input_paths, allow_inside_inputs=allow_inside_inputs)
    file_metadata = provenance_metadata(metadata, [_input_path(p) for p in input_paths])
    return _Output(out_dir, file_metadata, WriteGuard(str(out_dir), **guard))


@contextmanager
def planned_checkpoint(
    out_dir: PathLike,
    plan: Sequence[TensorSpec],
    *,
    aux_dir: PathLike | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    metadata: Mapping[str, object] | None = None,
    input_paths: Iterable[object] = (),
    overwrite: bool = False,
    dtype: torch.dtype | None = None,
    allow_inside_inputs: bool = False,
    context: str | None = None,
    finite_only: bool = True,
) -> Iterator[PlannedShards]:
    """``write_checkpoint`` for a caller that knows every tensor in advance: yields a
    ``PlannedShards`` to ``write(name, tensor)`` each planned tensor into, in any order. On
    leaving the block the folder is completed and renamed into place atomically; on an error
    (a tensor off the plan, one missing, an interrupt) nothing is left behind."""
    guard = dict(dtype=dtype, context=context, finite_only=finite_only)
    output = _output(out_dir, max_shard_bytes, metadata, input_paths, allow_inside_inputs, guard)
    with atomic_dir(output.path, overwrite=overwrite) as staging:
        shards = PlannedShards(staging, plan, max_shard_bytes, output.metadata, output.guard)
        try:
            yield shards
            shards.finish()
        finally:
            shards.close()
        if aux_dir is not None:
            copy_aux_files(Path(aux_dir).expanduser(), staging)


def write_checkpoint(
    tensors: Iterable[tuple[str, torch.Tensor]],
    out_dir: PathLike,
    *,
    aux_dir: PathLike | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    metadata: Mapping[str, object] | None = None,
    input_paths: Iterable[object] = (),
    overwrite: bool = False,
    dtype: torch.dtype | None = None,
    allow_inside_inputs: bool = False,
    context: str | None = None,
    finite_only: bool = True,
    plan: Sequence[TensorSpec] | None = None,
) -> Path:
    """Write `(name, tensor)` pairs as a Hugging Face style safetensors folder at `out_dir`.

    `tensors` is consumed lazily; at most one shard's tensors are held, by reference, so do not
    modify a tensor in place after yielding it. With a `plan` (every tensor's stored name,
    dtype and shape, see ``planned_checkpoint``) nothing is held: each tensor is written as it
    comes. `dtype` casts floating tensors. Config and
    tokenizer files are copied from `aux_dir`. `input_paths` (paths or Checkpoints) are
    recorded in the metadata and protected: `out_dir` may not be, contain or lie inside one.
    Nothing at `out_dir` changes unless the whole folder was written.

    A floating tensor holding NaN/Inf is refused (unless `finite_only=False`), and so is one
    whose values `dtype` cannot hold; `context` (e.g. "ties, scaling=nan") is quoted in those
    messages to say what produced the tensor.
    """
    options = dict(
        aux_dir=aux_dir, max_shard_bytes=max_shard_bytes, metadata=metadata,
        input_paths=input_paths, overwrite=overwrite, dtype=dtype,
        allow_inside_inputs=allow_inside_inputs, context=context, finite_only=finite_only,
    )  # fmt: skip
    if plan is not None:
        with planned_checkpoint(out_dir, plan, **options) as shards:
            for name, tensor in tensors:
                shards.write(name, tensor)
        return Path(out_dir).expanduser().absolute()
    guard = dict(dtype=dtype, context=context, finite_only=finite_only)
    output = _output(out_dir, max_shard_bytes, metadata, input_paths, allow_inside_inputs, guard)
    with atomic_dir(output.path, overwrite=overwrite) as staging:
        _write_shards(tensors, staging, max_shard_bytes, output.metadata, output.guard)
        if aux_dir is not None:
            copy_aux_files(Path(aux_dir).expanduser(), staging)
    return output.path


def save_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    path: PathLike,
    *,
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write `state_dict` to one safetensors file at `path` atomically (replacing it if present)."""
    guard = WriteGuard(str(path))
    tensors = [(name, prepared(name, tensor, guard)) for name, tensor in state_dict.items()]
    file_metadata = provenance_metadata(metadata)
    return write_file_atomically(
        path, lambda temp_path: write_safetensors_file(temp_path, tensors, file_metadata)
    )

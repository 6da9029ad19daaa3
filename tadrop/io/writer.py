"""Write models as Hugging Face style safetensors folders, atomically and with provenance."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from tadrop.io.atomic import atomic_dir, write_file_atomically
from tadrop.io.aux_files import copy_aux_files
from tadrop.io.errors import CheckpointError, count_nonfinite
from tadrop.io.safetensors_format import write_safetensors_file
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


@dataclass(frozen=True)
class _WriteGuard:
    """How tensors are checked and cast on their way to `where` (the output, for messages)."""

    where: str
    dtype: torch.dtype | None = None
    context: str | None = None  # the parameters that produced the tensors, for messages
    finite_only: bool = True


def _prepared(name: object, tensor: object, guard: _WriteGuard) -> torch.Tensor:
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


def _made_by(guard: _WriteGuard) -> str:
    return f" It was made by: {guard.context}." if guard.context else ""


def _nonfinite_error(
    name: str, tensor: torch.Tensor, n_bad: int, guard: _WriteGuard
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
    name: str, tensor: torch.Tensor, dtype: torch.dtype, guard: _WriteGuard
) -> CheckpointError:
    largest = float(tensor[torch.isfinite(tensor)].abs().max())
    return CheckpointError(
        f"{guard.where}: tensor {name!r} holds values up to {largest:.4g} in magnitude, beyond "
        f"the range of {dtype} (largest {torch.finfo(dtype).max:.4g}); they would be written as "
        f"Inf.{_made_by(guard)} Write in float32 (output dtype float32) or reduce the scaling."
    )


def _shard_names(count: int) -> list[str]:
    digits = max(5, len(str(count)))
    return [f"model-{i:0{digits}d}-of-{count:0{digits}d}.safetensors" for i in range(1, count + 1)]


def _write_shards(
    tensors: Iterable[tuple[str, torch.Tensor]],
    folder: Path,
    max_shard_bytes: int,
    metadata: dict[str, str],
    guard: _WriteGuard,
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
        tensor = _prepared(name, tensor, guard)
        if name in seen:
            raise CheckpointError(f"tensor {name!r} was given twice; names must be unique.")
        seen.add(name)
        size = tensor.numel() * tensor.element_size()
        if pending and pending_bytes + size > max_shard_bytes:
            flush()
        pending.append((name, tensor))
        pending_bytes += size
        total_bytes += size
    if not seen:
        raise CheckpointError("no tensors to write; the model is empty.")
    flush()
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
) -> Path:
    """Write `(name, tensor)` pairs as a Hugging Face style safetensors folder at `out_dir`.

    `tensors` is consumed lazily; at most one shard's tensors are held, by reference, so do not
    modify a tensor in place after yielding it. `dtype` casts floating tensors. Config and
    tokenizer files are copied from `aux_dir`. `input_paths` (paths or Checkpoints) are
    recorded in the metadata and protected: `out_dir` may not be, contain or lie inside one.
    Nothing at `out_dir` changes unless the whole folder was written.

    A floating tensor holding NaN/Inf is refused (unless `finite_only=False`), and so is one
    whose values `dtype` cannot hold; `context` (e.g. "ties, scaling=nan") is quoted in those
    messages to say what produced the tensor.
    """
    out_dir = Path(out_dir).expanduser().absolute()
    input_paths = list(input_paths)
    if not isinstance(max_shard_bytes, int) or max_shard_bytes <= 0:
        raise CheckpointError(
            f"max_shard_bytes must be a positive integer, got {max_shard_bytes!r}"
        )
    check_not_over_inputs(out_dir, input_paths, allow_inside_inputs=allow_inside_inputs)
    file_metadata = provenance_metadata(metadata, [_input_path(p) for p in input_paths])
    guard = _WriteGuard(str(out_dir), dtype, context, finite_only)
    with atomic_dir(out_dir, overwrite=overwrite) as staging:
        _write_shards(tensors, staging, max_shard_bytes, file_metadata, guard)
        if aux_dir is not None:
            copy_aux_files(Path(aux_dir).expanduser(), staging)
    return out_dir


def save_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    path: PathLike,
    *,
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write `state_dict` to one safetensors file at `path` atomically (replacing it if present)."""
    guard = _WriteGuard(str(path))
    prepared = [(name, _prepared(name, tensor, guard)) for name, tensor in state_dict.items()]
    file_metadata = provenance_metadata(metadata)
    return write_file_atomically(
        path, lambda temp_path: write_safetensors_file(temp_path, prepared, file_metadata)
    )

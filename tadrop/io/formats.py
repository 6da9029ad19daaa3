"""`open_checkpoint`: recognise what a path holds and open it lazily.

Recognised, in this order of preference inside a folder:
  adapter_config.json (+ adapter_model.safetensors/.bin)   PEFT LoRA adapter, needs `base`
  model.safetensors.index.json + shards                    Hugging Face sharded safetensors
  model.safetensors                                        Hugging Face single file
  model-00001-of-0000N.safetensors ... without an index    complete set of shards
  pytorch_model.bin.index.json + shards                    Hugging Face sharded torch pickles
  pytorch_model.bin                                        Hugging Face torch pickle
  exactly one *.safetensors, or else one *.bin/.pt/.pth    a lone weights file
A file path may be a .safetensors file, a .bin/.pt/.pth torch file or a *.index.json.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from tadrop.io.aux_files import aux_files
from tadrop.io.checkpoint import Checkpoint, FileCheckpoint
from tadrop.io.errors import CheckpointError
from tadrop.io.json_files import read_json_file
from tadrop.io.lora import LoraCheckpoint
from tadrop.io.lora_config import read_adapter_config
from tadrop.io.tensor_files import SafetensorsFile, TensorFile, TorchFile

TORCH_SUFFIXES = (".bin", ".pt", ".pth")
_SHARD_NAME = re.compile(r"^model-(\d+)-of-(\d+)\.safetensors$")


def open_checkpoint(path: str | os.PathLike, *, base: Checkpoint | None = None) -> Checkpoint:
    """Open the checkpoint at `path` (file or folder) for lazy, one-tensor-at-a-time reading.

    `base` is needed for a PEFT LoRA adapter folder and ignored for every other format.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder; check the path.")
    if path.is_dir():
        return _open_folder(path, base)
    return _open_file(path)


def _aux_dir_beside(path: Path) -> Path | None:
    return path.parent if aux_files(path.parent) else None


def _file_type(path: Path) -> tuple[Callable[[Path], TensorFile], str]:
    if path.suffix == ".safetensors":
        return SafetensorsFile, "safetensors"
    if path.suffix.lower() in TORCH_SUFFIXES:
        return TorchFile, "torch"
    raise CheckpointError(
        f"{path}: unrecognised checkpoint file type; expected .safetensors, .bin, .pt or .pth "
        "(or a Hugging Face model folder)."
    )


def _open_file(path: Path) -> Checkpoint:
    if path.name.endswith(".index.json"):
        return _open_index(path)
    open_file, format_name = _file_type(path)
    return FileCheckpoint(path, format_name, [open_file(path)], aux_dir=_aux_dir_beside(path))


def _open_shards(
    source: Path, paths: list[Path], format_name: str, metadata: dict[str, str] | None = None
) -> FileCheckpoint:
    """Open every shard once; on any failure close the ones already opened."""
    opened: list[TensorFile] = []
    try:
        for path in paths:
            open_file, _ = _file_type(path)
            opened.append(open_file(path))
        return FileCheckpoint(
            source, format_name, opened, metadata=metadata, aux_dir=_aux_dir_beside(paths[0])
        )
    except BaseException:
        for tensor_file in opened:
            tensor_file.close()
        raise


def _read_index(index_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The weight map (tensor -> shard file name) and metadata of a *.index.json."""
    index = read_json_file(index_path, "shard index", "download or export the index again")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(key, str) and isinstance(shard, str) for key, shard in weight_map.items()
    ):
        raise CheckpointError(
            f"{index_path}: has no 'weight_map' of tensor names to shard file names; "
            "download or export the index again."
        )
    metadata = index.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    metadata = {str(key): str(value) for key, value in metadata.items()}
    return weight_map, metadata


def _open_index(index_path: Path) -> FileCheckpoint:
    weight_map, metadata = _read_index(index_path)
    folder = index_path.parent
    shard_names = sorted(set(weight_map.values()))
    for shard_name in shard_names:
        if Path(shard_name).name != shard_name:
            raise CheckpointError(
                f"{index_path}: shard name {shard_name!r} is not a plain file name; the index "
                "must name files in its own folder."
            )
        if not (folder / shard_name).is_file():
            first_tensor = next(key for key, name in weight_map.items() if name == shard_name)
            raise CheckpointError(
                f"{index_path}: lists shard {shard_name} (holding {first_tensor!r}, ...) but "
                f"{folder / shard_name} does not exist; download the missing shard."
            )
    if not shard_names:
        raise CheckpointError(f"{index_path}: the weight_map is empty; export the model again.")
    format_name = _file_type(folder / shard_names[0])[1] + "-sharded"
    checkpoint = _open_shards(folder, [folder / n for n in shard_names], format_name, metadata)
    for key, shard_name in weight_map.items():
        if key not in checkpoint or checkpoint.file_of(key).name != shard_name:
            checkpoint.close()
            raise CheckpointError(
                f"{index_path}: says tensor {key!r} is in {shard_name}, but that shard does not "
                "hold it; the index and the shards come from different exports."
            )
    return checkpoint


def _open_unindexed_shards(folder: Path, shard_paths: list[Path]) -> FileCheckpoint:
    """model-0000i-of-0000N.safetensors without an index: all N must be there."""
    totals = {int(_SHARD_NAME.match(p.name)[2]) for p in shard_paths}
    present = {int(_SHARD_NAME.match(p.name)[1]) for p in shard_paths}
    total = max(totals)
    missing = sorted(set(range(1, total + 1)) - present)
    if len(totals) > 1 or missing:
        raise CheckpointError(
            f"{folder}: has shards model-*-of-*.safetensors but no model.safetensors.index.json "
            f"and the set is incomplete (shard numbers missing: {missing}; totals seen: "
            f"{sorted(totals)}); download the missing shards and the index."
        )
    return _open_shards(folder, sorted(shard_paths), "safetensors-sharded")


def _open_adapter(folder: Path, base: Checkpoint | None) -> LoraCheckpoint:
    config = read_adapter_config(folder / "adapter_config.json")
    if base is None:
        base_name = config.base_model_name_or_path
        raise CheckpointError(
            f"{folder}: is a PEFT adapter; open its base model too and pass it: "
            f"open_checkpoint(adapter, base=open_checkpoint(base_path)) "
            f"(adapter_config.json names the base {base_name!r})."
        )
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (folder / name).is_file():
            adapter = _open_file(folder / name)
            break
    else:
        raise _nothing_recognised(folder, "adapter_model.safetensors or adapter_model.bin")
    try:
        return LoraCheckpoint(folder, adapter, config.model_dump(), base)
    except BaseException:
        adapter.close()
        raise


def _nothing_recognised(folder: Path, expected: str) -> CheckpointError:
    names = sorted(path.name + ("/" if path.is_dir() else "") for path in folder.iterdir())
    shown = ", ".join(names[:20]) + (f" ... ({len(names)} entries)" if len(names) > 20 else "")
    return CheckpointError(
        f"{folder}: no {expected} found (the folder holds: {shown or 'nothing'}). "
        "Point to a Hugging Face model folder or to a weights file."
    )


def _open_in_folder(folder: Path, name: str) -> Checkpoint:
    path = folder / name
    if name.endswith(".index.json"):
        return _open_index(path)
    open_file, format_name = _file_type(path)
    return FileCheckpoint(folder, format_name, [open_file(path)], aux_dir=folder)


def _open_folder(folder: Path, base: Checkpoint | None) -> Checkpoint:
    if (folder / "adapter_config.json").is_file():
        return _open_adapter(folder, base)
    for name in ("model.safetensors.index.json", "model.safetensors"):
        if (folder / name).is_file():
            return _open_in_folder(folder, name)
    shards = [path for path in folder.iterdir() if _SHARD_NAME.match(path.name)]
    if shards:
        return _open_unindexed_shards(folder, shards)
    for name in ("pytorch_model.bin.index.json", "pytorch_model.bin"):
        if (folder / name).is_file():
            return _open_in_folder(folder, name)
    # A lone weights file; safetensors preferred, so torch files count only without any.
    candidates = sorted(folder.glob("*.safetensors")) or sorted(
        p for p in folder.iterdir() if p.suffix.lower() in TORCH_SUFFIXES and p.is_file()
    )
    if len(candidates) == 1:
        return _open_file(candidates[0])
    raise _nothing_recognised(
        folder,
        "model.safetensors(.index.json), pytorch_model.bin(.index.json) or single weights file",
    )

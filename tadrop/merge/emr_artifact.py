"""EMR's compact artifact: one unified task vector, K bit-packed masks and K rescalers instead of
K full task models, and the rebuild of any task model from it (bit-exact with EMR's own).

A folder of:
- ``unified.safetensors``: tau_uni per merged tensor, float32 (the task models are computed in
  float32 from it, so storing it narrower would change them);
- ``masks.safetensors``: per merged tensor a (K, ceil(n / 8)) uint8 tensor, row k the flat mask
  M_k packed 8 entries per byte (numpy ``packbits``, big-endian bit order);
- ``manifest.json``: format and tadrop versions, tasks, rescalers, tensor shapes, the base
  checkpoint it expands over, the output dtype, each file's size and sha256, and the size ratio
  to K full task models.
Tensors the merge left alone are not stored: the expanded model takes them from the base.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tadrop.io import open_checkpoint, write_checkpoint
from tadrop.io.checkpoint import Checkpoint
from tadrop.io.errors import CheckpointError
from tadrop.io.safetensors_format import PlannedFile, TensorSpec
from tadrop.io.tensor_files import SafetensorsFile
from tadrop.io.writer import tadrop_version
from tadrop.merge.save import output_plan, provenance, staged_dir

FORMAT = "tadrop-emr-artifact"
FORMAT_VERSION = 1
ARTIFACT_DIR = "emr_artifact"  # the artifact's folder inside a merge's output folder
UNIFIED_FILE, MASKS_FILE, MANIFEST_FILE = (
    "unified.safetensors",
    "masks.safetensors",
    "manifest.json",
)


def task_tensor(
    base: torch.Tensor, unified: torch.Tensor, mask: torch.Tensor, rescaler: float
) -> torch.Tensor:
    """theta_pre + lambda_k * M_k * tau_uni for one tensor, float32 (``base`` is float32)."""
    # base + mask * (lambda * tau_uni): the same values as torch.where(mask, base + lambda *
    # tau_uni, base) (adding a zero is exact), without a bool-conditioned op (slow on a CPU).
    delta = torch.empty_like(unified).copy_(mask).mul_(rescaler * unified)
    return delta.add_(base)


def pack_mask(mask: torch.Tensor) -> np.ndarray:
    return np.packbits(mask.flatten().cpu().numpy())


def unpack_mask(packed: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    numel = int(np.prod(shape)) if shape else 1
    return torch.from_numpy(np.unpackbits(packed, count=numel).view(np.bool_)).reshape(shape)


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def model_bytes(family: Any, dtype: torch.dtype | None) -> int:
    """Bytes of one full task model as written (every base tensor, in ``dtype`` when given)."""
    total = 0
    for name in family.base.keys():
        source = family.base.dtype(name)
        width = (
            dtype.itemsize if dtype is not None and source.is_floating_point else source.itemsize
        )
        total += width * int(np.prod(family.base.shape(name)))
    return total


def refuse_artifact_task(task: str) -> None:
    """ValueError for a task named like the artifact's folder (its model would collide)."""
    if task == ARTIFACT_DIR:
        raise ValueError(
            f"A task is named {ARTIFACT_DIR!r}, the folder of EMR's compact artifact; rename "
            "the task (the models: mapping of the config)."
        )


class ArtifactFiles:
    """The artifact's two safetensors files, laid out up front as the safetensors library lays
    them out (names sorted, no metadata), then filled one merged tensor at a time."""

    def __init__(self, folder: Path, shapes: dict[str, tuple[int, ...]], tasks: int) -> None:
        folder.mkdir(parents=True)
        names = sorted(shapes)
        packed = {name: (tasks, -(-math.prod(shapes[name]) // 8)) for name in names}
        self.unified = PlannedFile(
            folder / UNIFIED_FILE,
            [TensorSpec(name, torch.float32, shapes[name]) for name in names],
            {},
            ascii_names=False,
        )
        self.masks = PlannedFile(
            folder / MASKS_FILE,
            [TensorSpec(name, torch.uint8, packed[name]) for name in names],
            {},
            ascii_names=False,
        )

    def write(self, name: str, unified: torch.Tensor, packed_masks: list[np.ndarray]) -> None:
        """tau_uni (float32) and the K packed masks of one merged tensor."""
        self.unified.write(name, unified.cpu().contiguous())
        self.masks.write(name, torch.from_numpy(np.stack(packed_masks)))


@contextmanager
def artifact_files(
    folder: Path, shapes: dict[str, tuple[int, ...]], tasks: int
) -> Iterator[ArtifactFiles]:
    """``ArtifactFiles`` in the new folder ``folder``, fsync'd and closed on leaving the block
    (closed, for the caller's staging folder to remove, on an error)."""
    files = ArtifactFiles(folder, shapes, tasks)
    try:
        yield files
        files.unified.close()
        files.masks.close()
    finally:
        files.unified.abort()
        files.masks.abort()


def write_artifact(
    result: Any, folder: Path, *, dtype: torch.dtype | None = None
) -> dict[str, Any]:
    """Write an EMR result's artifact into the new folder ``folder`` (inside a staging folder;
    ``save_artifact`` writes one atomically on its own); returns the manifest."""
    shapes = {name: tuple(tensor.shape) for name, tensor in result.unified.items()}
    with artifact_files(folder, shapes, len(result.family.task_names)) as files:
        for name in shapes:
            files.write(name, result.unified[name], result.packed_masks[name])
    return write_manifest(result, folder, shapes, dtype)


def write_manifest(
    result: Any, folder: Path, shapes: dict[str, tuple[int, ...]], dtype: torch.dtype | None
) -> dict[str, Any]:
    """The manifest of the artifact whose two files ``folder`` holds (``shapes``: the merged
    tensors in walk order); returns it."""
    files = {
        name: {"bytes": (folder / name).stat().st_size, "sha256": _sha256(folder / name)}
        for name in (UNIFIED_FILE, MASKS_FILE)
    }
    tasks = list(result.family.task_names)
    full = len(tasks) * model_bytes(result.family, dtype)
    stored = sum(item["bytes"] for item in files.values())
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tadrop_version": tadrop_version(),
        "provenance": provenance(result),
        "tasks": tasks,
        "rescalers": result.rescalers,  # JSON floats round-trip float64 exactly
        "tensors": {name: list(shape) for name, shape in shapes.items()},
        "base": str(result.family.base.source),
        "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
        "files": files,
        "task_models_bytes": full,
        "size_ratio": stored / full if full else 0.0,
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest


def save_artifact(
    result: Any, out_dir: str | Path, *, overwrite: bool = False, dtype: torch.dtype | None = None
) -> Path:
    """Write an EMR result's compact artifact to ``out_dir`` atomically."""
    out_dir = Path(out_dir).expanduser().absolute()
    inputs = [result.family.base.source, *(c.source for c in result.family.tasks.values())]
    with staged_dir(out_dir, overwrite=overwrite, inputs=inputs) as staging:
        write_artifact(result, staging / ARTIFACT_DIR, dtype=dtype)
    return out_dir / ARTIFACT_DIR


def read_manifest(artifact: str | Path) -> dict[str, Any]:
    """The manifest of an artifact folder, after checking its format and files' sha256."""
    folder = Path(artifact).expanduser()
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{folder}: no {MANIFEST_FILE}; pass the folder EMR's compact artifact was written to "
            f"(the {ARTIFACT_DIR}/ folder inside a merge's output)."
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: not a {FORMAT} version {FORMAT_VERSION} manifest; write it again with "
            "this tadrop (method emr, output: compact)."
        )
    for name, expected in manifest["files"].items():
        if not (folder / name).is_file() or _sha256(folder / name) != expected["sha256"]:
            raise CheckpointError(
                f"{folder / name}: missing or changed since it was written (sha256 differs "
                f"from {MANIFEST_FILE}); write the artifact again."
            )
    return manifest


def _check_base(manifest: dict[str, Any], base: Checkpoint) -> None:
    for name, shape in manifest["tensors"].items():
        if name not in base or list(base.shape(name)) != shape:
            found = list(base.shape(name)) if name in base else "no such tensor"
            raise CheckpointError(
                f"{base.source}: tensor {name!r} of the artifact has shape {shape} but the base "
                f"has {found}; pass the base the EMR merge was made from (--base)."
            )


def iter_task_model(
    artifact: str | Path, task: str, base: Checkpoint, dtype: torch.dtype | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of task ``task``'s full model, in the base's key order."""
    folder = Path(artifact).expanduser()
    manifest = read_manifest(folder)
    if task not in manifest["tasks"]:
        raise ValueError(f"{folder}: no task {task!r}; the tasks are {manifest['tasks']}.")
    index, rescaler = manifest["tasks"].index(task), manifest["rescalers"][task]
    _check_base(manifest, base)
    # our reader maps the file afresh for each tensor, so pages already used are let go: one
    # safe_open for the whole loop would keep the whole float32 unified vector resident
    unified, masks = SafetensorsFile(folder / UNIFIED_FILE), SafetensorsFile(folder / MASKS_FILE)
    for name in base.keys():
        tensor = base.get(name)
        if name in manifest["tensors"]:
            unified_tensor = unified.get(name)
            packed = masks.get(name).numpy()[index]
            mask = unpack_mask(packed, tuple(unified_tensor.shape))
            merged = task_tensor(tensor.float(), unified_tensor, mask, rescaler)
            yield name, merged.to(dtype or tensor.dtype)
        elif dtype is not None and tensor.is_floating_point():
            yield name, tensor.to(dtype)
        else:
            yield name, tensor


def expand(
    artifact: str | Path,
    task: str,
    out_dir: str | Path,
    *,
    base: str | Path | None = None,
    overwrite: bool = False,
    max_shard_bytes: int = 5 * 2**30,
) -> Path:
    """Write task ``task``'s full model, rebuilt from the artifact over its base, to ``out_dir``
    (a Hugging Face style folder, atomically). ``base``: overrides the manifest's base path."""
    manifest = read_manifest(artifact)
    dtype = getattr(torch, manifest["dtype"]) if manifest["dtype"] else None
    with open_checkpoint(base or manifest["base"]) as checkpoint:
        metadata = {
            **manifest["provenance"],
            "task": task,
            "rescaler": json.dumps(manifest["rescalers"].get(task)),
            "expanded_from": str(Path(artifact).expanduser().absolute()),
        }
        return write_checkpoint(
            iter_task_model(artifact, task, checkpoint, dtype),
            out_dir,
            aux_dir=checkpoint.aux_dir,
            max_shard_bytes=max_shard_bytes,
            metadata=metadata,
            input_paths=[checkpoint.source, Path(artifact)],
            overwrite=overwrite,
            plan=output_plan(checkpoint, dtype, checkpoint.keys()),
        )

"""Checkpoint I/O: lazy readers for safetensors (single, sharded), torch pickles and PEFT LoRA
adapters; an atomic writer of Hugging Face style safetensors folders."""

from tadrop.io.atomic import atomic_dir, atomic_write_bytes, atomic_write_text
from tadrop.io.checkpoint import Checkpoint, FileCheckpoint
from tadrop.io.errors import (
    CheckpointError,
    check_finite,
    check_not_empty,
    count_nonfinite,
    empty_tensor_error,
)
from tadrop.io.formats import open_checkpoint
from tadrop.io.lora import LoraCheckpoint
from tadrop.io.writer import (
    DEFAULT_MAX_SHARD_BYTES,
    provenance_metadata,
    save_state_dict,
    write_checkpoint,
)

__all__ = [
    "DEFAULT_MAX_SHARD_BYTES",
    "Checkpoint",
    "CheckpointError",
    "FileCheckpoint",
    "LoraCheckpoint",
    "atomic_dir",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_finite",
    "count_nonfinite",
    "check_not_empty",
    "empty_tensor_error",
    "open_checkpoint",
    "provenance_metadata",
    "save_state_dict",
    "write_checkpoint",
]

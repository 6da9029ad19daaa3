"""The safetensors file layout: header validation on read, header + data on write.

Layout: 8 bytes little-endian header length N, N bytes of JSON
`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`, then the
data buffer; offsets are relative to the buffer start. We check the header ourselves before
handing the file to `safetensors.safe_open`, so a damaged file gets a message that names it.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from tadrop.io.errors import CheckpointError

# safetensors dtype code -> torch dtype (only the ones this torch build has).
_DTYPE_NAMES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
    "C64": "complex64",
    "C128": "complex128",
}
DTYPES: dict[str, torch.dtype] = {
    code: getattr(torch, name) for code, name in _DTYPE_NAMES.items() if hasattr(torch, name)
}
DTYPE_CODES: dict[torch.dtype, str] = {dtype: code for code, dtype in DTYPES.items()}

MAX_HEADER_BYTES = 100_000_000  # the limit safetensors itself enforces
_ALIGNMENT = 8  # the header is padded with spaces so the data buffer starts 8-byte aligned


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives inside a safetensors file."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int  # byte offset inside the data buffer
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    entries: dict[str, TensorEntry]  # in header order
    metadata: dict[str, str]
    data_start: int  # absolute file offset of the data buffer


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    counts = Counter(key for key, _ in pairs)
    duplicates = sorted(key for key, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"duplicate keys {duplicates}")
    return dict(pairs)


def _damaged(path: str | Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: not a valid safetensors file: {problem}. The file is truncated or corrupt "
        "(an interrupted download or copy?); download or export it again."
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: object, limit: int = 120) -> str:
    """repr for a message, cut short: a damaged header can hold anything."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_entry(path: str | Path, name: str, raw: object, data_size: int) -> TensorEntry:
    if not isinstance(raw, dict) or not {"dtype", "shape", "data_offsets"} <= raw.keys():
        raise _damaged(
            path, f"header entry for tensor {_short(name)} lacks dtype/shape/data_offsets"
        )
    code, shape, offsets = raw["dtype"], raw["shape"], raw["data_offsets"]
    if not isinstance(code, str) or code not in DTYPES:
        raise CheckpointError(
            f"{path}: tensor {_short(name)} has dtype {_short(code)}, which this torch build cannot hold "
            f"(known: {', '.join(DTYPES)}); convert the checkpoint to a supported dtype."
        )
    dims_ok = isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape)
    offsets_ok = (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(_is_int(o) for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    )
    if not (dims_ok and offsets_ok):
        raise _damaged(
            path,
            f"tensor {_short(name)} has shape {_short(shape)} / data_offsets {_short(offsets)}",
        )
    begin, end = offsets
    dtype = DTYPES[code]
    if end - begin != math.prod(shape) * dtype.itemsize:
        raise _damaged(
            path,
            f"tensor {name!r} of shape {shape} {code} spans {end - begin} bytes, "
            f"not {math.prod(shape) * dtype.itemsize}",
        )
    if end > data_size:
        raise _damaged(
            path,
            f"tensor {name!r} ends at data byte {end} but the file holds only {data_size} data "
            "bytes",
        )
    return TensorEntry(dtype=dtype, shape=tuple(shape), begin=begin, end=end)


def read_header(path: Path) -> SafetensorsHeader:
    """Read and check the header of the safetensors file at `path` (reads no tensor data)."""
    file_size = path.stat().st_size
    with open(path, "rb") as stream:
        prefix = stream.read(8)
        header_size = _header_size(path, prefix, file_size)
        return _parse_header(path, stream.read(header_size), file_size)


def header_of_bytes(name: str | Path, data: bytes) -> SafetensorsHeader:
    """`read_header` for a whole file held in memory (an upload); `name` is used in messages."""
    header_size = _header_size(name, data[:8], len(data))
    return _parse_header(name, data[8 : 8 + header_size], len(data))


def _header_size(path: str | Path, prefix: bytes, file_size: int) -> int:
    """The header length the first 8 bytes declare, checked against the file size and limit."""
    if len(prefix) < 8:
        raise CheckpointError(
            f"{path}: too short to be a safetensors file (only {file_size} bytes). It is "
            "truncated or not a safetensors file; download or export it again."
        )
    (header_size,) = struct.unpack("<Q", prefix)
    if header_size > file_size - 8:
        raise _damaged(
            path, f"the header claims {header_size} bytes but only {file_size - 8} follow"
        )
    if header_size > MAX_HEADER_BYTES:
        raise _damaged(path, f"the header claims {header_size} bytes (limit 100 MB)")
    return header_size


def _parse_header(path: str | Path, header_bytes: bytes, file_size: int) -> SafetensorsHeader:
    try:
        header = json.loads(header_bytes, object_pairs_hook=_reject_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as err:
        raise _damaged(path, f"the header is not valid JSON ({err})") from None
    except RecursionError:
        raise _damaged(path, "the header is JSON nested too deeply") from None
    if not isinstance(header, dict):
        raise _damaged(path, "the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()
    ):
        raise _damaged(path, "__metadata__ is not a mapping of strings to strings")
    data_size = file_size - 8 - len(header_bytes)
    entries = {name: _parse_entry(path, name, raw, data_size) for name, raw in header.items()}
    return SafetensorsHeader(entries=entries, metadata=metadata, data_start=8 + len(header_bytes))


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as it will be stored: name, dtype and shape (what a header says of it)."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @classmethod
    def of(cls, name: str, tensor: torch.Tensor) -> TensorSpec:
        return cls(name, tensor.dtype, tuple(tensor.shape))


def check_storable(spec: TensorSpec) -> None:
    """CheckpointError when safetensors has no code for the tensor's dtype."""
    if spec.dtype not in DTYPE_CODES:
        raise CheckpointError(
            f"tensor {spec.name!r} has dtype {spec.dtype}, which safetensors cannot store; "
            "convert it first."
        )


@dataclass(frozen=True)
class FileLayout:
    """One file's bytes before its data: the length prefix and JSON header, and where each
    tensor's data starts (absolute file offsets)."""

    header: bytes
    offsets: dict[str, int]
    size: int  # of the whole file


def file_layout(
    specs: list[TensorSpec], metadata: dict[str, str], *, ascii_names: bool = True
) -> FileLayout:
    """Header keys in ``specs`` order; data laid out largest element size first (a stable
    sort), so each tensor stays aligned to its element size in the 8-byte aligned buffer.
    ``ascii_names=False`` writes non-ASCII names unescaped, as the safetensors library does."""
    data_order = sorted(specs, key=lambda spec: -spec.dtype.itemsize)  # stable sort
    spans = {}
    offset = 0
    for spec in data_order:
        spans[spec.name] = [offset, offset + spec.nbytes]
        offset += spec.nbytes
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    for spec in specs:
        header[spec.name] = {
            "dtype": DTYPE_CODES[spec.dtype],
            "shape": list(spec.shape),
            "data_offsets": spans[spec.name],
        }
    encoded = json.dumps(header, separators=(",", ":"), ensure_ascii=ascii_names).encode("utf-8")
    encoded += b" " * (-(len(encoded) + 8) % _ALIGNMENT)
    prefix = struct.pack("<Q", len(encoded)) + encoded
    start = len(prefix)
    offsets = {name: start + begin for name, (begin, _) in spans.items()}
    return FileLayout(prefix, offsets, start + offset)


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a contiguous CPU tensor (no copy)."""
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


def write_safetensors_file(
    path: Path, tensors: Iterable[tuple[str, torch.Tensor]], metadata: dict[str, str]
) -> None:
    """Write contiguous CPU `tensors` to a new file at `path` (which must not exist), fsync'd.

    The header lists the tensors in the order given; the data follows ``file_layout``.
    """
    tensors = list(tensors)
    specs = [TensorSpec.of(name, tensor) for name, tensor in tensors]
    for spec in specs:
        check_storable(spec)
    layout = file_layout(specs, metadata)
    data_order = sorted(tensors, key=lambda item: layout.offsets[item[0]])
    with open(path, "xb") as stream:
        stream.write(layout.header)
        for _, tensor in data_order:
            if tensor.numel():
                stream.write(tensor_bytes(tensor))
        stream.flush()
        os.fsync(stream.fileno())


class PlannedFile:
    """A safetensors file whose header is written first, from ``specs``; each tensor's bytes
    then go to their offset as they arrive, in any order (``write``). ``close`` checks that
    every tensor came and fsyncs; ``abort`` only closes (the caller removes the file)."""

    def __init__(
        self, path: Path, specs: list[TensorSpec], metadata: dict[str, str], **layout: bool
    ) -> None:
        for spec in specs:
            check_storable(spec)
        self.path = path
        self.layout = file_layout(specs, metadata, **layout)
        self.missing = {spec.name for spec in specs}
        self.stream = open(path, "xb")  # noqa: SIM115 (closed by close/abort)
        self.stream.write(self.layout.header)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Write one contiguous CPU tensor of the announced dtype and shape (checked by the
        caller) at its offset."""
        self.missing.remove(name)
        if tensor.numel():
            self.stream.seek(self.layout.offsets[name])
            self.stream.write(tensor_bytes(tensor))

    @property
    def complete(self) -> bool:
        return not self.missing

    def close(self) -> None:
        if self.missing:
            raise CheckpointError(
                f"{self.path}: tensor(s) {sorted(self.missing)[:5]} were announced but never "
                "written."
            )
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()

    def abort(self) -> None:
        self.stream.close()

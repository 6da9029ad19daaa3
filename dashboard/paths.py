"""The dashboard's data root: where it may read and write, and the checks on user paths.

The app touches only files under its data roots: ``--data-root`` on the command line
(``streamlit run dashboard/app.py -- --data-root DIR``, repeatable), else ``TADROP_DATA_ROOT``
(several joined with ``os.pathsep``), else the working folder and the demo zoo's folder.
A path typed by the user is refused when it contains ``..``, lies outside every root, or is a
symlink (at any level) leading outside them. No streamlit import: pages call these and show
``PathRefused`` messages with ``st.error``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from tadrop.io.confine import is_inside, reads_confined_to

ENV_DATA_ROOT = "TADROP_DATA_ROOT"
ENV_UPLOAD_LIMIT_MB = "TADROP_UPLOAD_LIMIT_MB"
DEFAULT_UPLOAD_LIMIT_MB = 2048

# File names that mark a checkpoint (a file, or the folder holding it) for the pickers.
_CHECKPOINT_FILES = re.compile(
    r"(\.safetensors|\.bin|\.pt|\.pth|model\.safetensors\.index\.json|adapter_config\.json)$"
)
_SAFE_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class PathRefused(ValueError):
    """A user path the dashboard will not read or write, with the reason."""


def data_roots(
    argv: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    *,
    default_roots: Iterable[Path] = (),
) -> tuple[Path, ...]:
    """Resolved data roots, from ``--data-root`` in argv, the environment or the defaults."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data-root", action="append", default=[])
    known, _ = parser.parse_known_args(list(argv))
    chosen: list[str | Path] = list(known.data_root)
    if not chosen and environ.get(ENV_DATA_ROOT):
        chosen = [part for part in environ[ENV_DATA_ROOT].split(os.pathsep) if part]
    if not chosen:
        chosen = [Path.cwd(), *default_roots]
    roots: list[Path] = []
    for root in chosen:
        resolved = Path(root).expanduser().resolve()
        if resolved not in roots:
            roots.append(resolved)
    return tuple(roots)


def upload_limit_bytes(environ: Mapping[str, str] | None = None) -> int:
    """Largest upload accepted, from ``TADROP_UPLOAD_LIMIT_MB`` (default 2048 MB)."""
    environ = os.environ if environ is None else environ
    text = environ.get(ENV_UPLOAD_LIMIT_MB, str(DEFAULT_UPLOAD_LIMIT_MB))
    try:
        megabytes = int(text)
    except ValueError as error:
        raise PathRefused(f"{ENV_UPLOAD_LIMIT_MB}={text!r} is not a whole number of MB.") from error
    return megabytes * 1024 * 1024


def inside_roots(roots: Sequence[Path]) -> AbstractContextManager[None]:
    """Within the block, every file the library opens (weights, each shard, index, adapter
    config) or copies into an output (config and tokenizer files) must resolve under the roots;
    a symlink leading out is refused with a message naming it."""
    return reads_confined_to(roots)


def resolve_user_path(text: str | os.PathLike[str], roots: Sequence[Path]) -> Path:
    """The real path a user means, if it is safely under a data root; else ``PathRefused``.

    Relative paths are taken from the first root. Symlinks are followed (``resolve``) and the
    target must still be under a root, so a link pointing out of the root is refused.
    """
    raw = str(text).strip()
    if not raw:
        raise PathRefused("Empty path: choose a file or folder under the data root.")
    if "\x00" in raw:
        raise PathRefused("The path contains a NUL character.")
    candidate = Path(raw).expanduser()
    if ".." in candidate.parts:
        raise PathRefused(f"{raw}: paths with '..' are refused; give a path under the data root.")
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    if not is_inside(candidate.absolute(), roots):
        raise PathRefused(f"{raw} is outside the data root ({_roots_text(roots)}).")
    resolved = candidate.resolve()
    if not is_inside(resolved, roots):
        raise PathRefused(
            f"{raw} leads through a symlink to {resolved}, outside the data root "
            f"({_roots_text(roots)})."
        )
    return resolved


def _roots_text(roots: Sequence[Path]) -> str:
    return ", ".join(str(root) for root in roots)


def output_path(text: str | os.PathLike[str], roots: Sequence[Path]) -> Path:
    """A path to write to: under a root, and not a data root itself."""
    resolved = resolve_user_path(text, roots)
    if resolved in roots:
        raise PathRefused(f"{resolved} is the data root itself; choose a folder inside it.")
    return resolved


def safe_file_name(name: str, *, suffix: str) -> str:
    """An uploaded file's name reduced to letters, digits, ``._-``, ending in ``suffix``."""
    stem = Path(name).name
    if suffix and stem.endswith(suffix):
        stem = stem[: -len(suffix)]
    cleaned = _SAFE_FILE_NAME.sub("_", stem).strip("._") or "upload"
    return f"{cleaned}{suffix}"


def find_checkpoints(
    roots: Sequence[Path], *, max_depth: int = 4, limit: int = 400, include_merged: bool = False
) -> list[Path]:
    """Checkpoint files and folders under the roots, for the pickers (hidden folders skipped).

    A folder holding a Hugging Face style checkpoint (``model.safetensors``, a shard index,
    ``pytorch_model.bin``, a LoRA adapter) is listed as the folder; other files one by one.
    Head-only files (a bare linear layer, such as the demo zoo's ``heads/``) are never listed;
    outputs of a merge (``is_merged_output``) only with ``include_merged``.
    """
    found: list[Path] = []
    for entry in _checkpoint_entries(roots, max_depth):
        if entry in found or not is_inside(entry.resolve(), roots):
            continue
        header = _safetensors_header(entry)
        if _is_head_only(header) or (_is_merged(header) and not include_merged):
            continue
        found.append(entry)
        if len(found) >= limit:
            break
    return found


def is_merged_output(checkpoint: Path) -> bool:
    """True for what ``tadrop merge`` (or the dashboard's export) wrote: its safetensors
    metadata names the merge ``method`` (tadrop.merge.save) and the input checkpoints."""
    return _is_merged(_safetensors_header(checkpoint))


def checkpoint_label(checkpoint: Path, roots: Sequence[Path]) -> str:
    """A picker's label: the path under its root, ``[merged]`` first for a merge's output."""
    shown = display_path(checkpoint, roots)
    return f"[merged] {shown}" if is_merged_output(checkpoint) else shown


def _is_merged(header: tuple[dict[str, str], list[str]] | None) -> bool:
    return header is not None and "method" in header[0] and "input_paths" in header[0]


def _is_head_only(header: tuple[dict[str, str], list[str]] | None) -> bool:
    """At most 4 tensors, each a bare ``weight``/``bias`` or ``<one name>.weight``/``.bias``: a
    linear head (and its probe), not a model with module paths."""
    if header is None or not header[1] or len(header[1]) > 4:
        return False
    return all(
        key.count(".") <= 1 and key.rsplit(".", 1)[-1] in {"weight", "bias"} for key in header[1]
    )


def _safetensors_header(checkpoint: Path) -> tuple[dict[str, str], list[str]] | None:
    """(metadata, tensor names) of a safetensors file or a folder's first weights file; None
    when there is none or it cannot be read (the loader reports that when it is chosen)."""
    from safetensors import SafetensorError, safe_open

    file = _weights_file(checkpoint)
    if file is None:
        return None
    try:
        with safe_open(str(file), framework="np") as opened:
            return opened.metadata() or {}, list(opened.keys())
    except (OSError, SafetensorError):  # damaged: still offered; loading it names the problem
        return None


def _weights_file(checkpoint: Path) -> Path | None:
    if checkpoint.is_file():
        return checkpoint if checkpoint.suffix == ".safetensors" else None
    for name in ("model.safetensors", "adapter_model.safetensors"):
        if (checkpoint / name).is_file():
            return checkpoint / name
    shards = sorted(checkpoint.glob("*.safetensors"))
    return shards[0] if shards else None


def _checkpoint_entries(roots: Sequence[Path], max_depth: int) -> Iterable[Path]:
    """Checkpoint folders and loose weight files under the roots, hidden folders skipped."""
    for root in roots:
        for folder, subfolders, files in os.walk(root, followlinks=False):
            depth = len(Path(folder).relative_to(root).parts)
            subfolders[:] = sorted(
                name for name in subfolders if not name.startswith(".") and depth < max_depth
            )
            if any(_is_folder_checkpoint(name) for name in files):
                yield Path(folder)
            else:
                entries = [Path(folder) / name for name in sorted(files)]
                yield from (path for path in entries if _CHECKPOINT_FILES.search(path.name))


def _is_folder_checkpoint(file_name: str) -> bool:
    return file_name in {
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
        "adapter_config.json",
        "adapter_model.safetensors",
        "adapter_model.bin",
    }


def display_path(path: Path, roots: Sequence[Path]) -> str:
    """A path shown relative to the root that holds it."""
    for root in roots:
        if path == root or path.is_relative_to(root):
            return str(path.relative_to(root)) or "."
    return str(path)

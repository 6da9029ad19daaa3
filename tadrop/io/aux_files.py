"""Files that belong beside a model's weights (config, tokenizer, sentence-transformers modules)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tadrop.io.atomic import fsync_path, fsync_tree
from tadrop.io.confine import check_readable

AUX_FILE_NAMES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "preprocessor_config.json",
    "chat_template.jinja",
    "chat_template.json",
    # sentence-transformers
    "modules.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
)
AUX_FILE_SUFFIXES = (".model",)  # sentencepiece models: tokenizer.model, spiece.model, ...


def aux_files(folder: Path) -> list[Path]:
    """The config/tokenizer files directly inside `folder`."""
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and (path.name in AUX_FILE_NAMES or path.suffix in AUX_FILE_SUFFIXES)
    )


def module_dirs(folder: Path) -> list[Path]:
    """Sub-folders a sentence-transformers `modules.json` refers to (1_Pooling, 2_Normalize, ...)."""
    if (folder / "modules.json").is_file():
        check_readable(folder / "modules.json", "config file")
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # no usable modules.json: no module folders
        return []
    found = []
    for module in modules if isinstance(modules, list) else []:
        sub_path = module.get("path") if isinstance(module, dict) else None
        if not isinstance(sub_path, str) or not sub_path:
            continue
        sub_dir = (folder / sub_path).resolve()
        if sub_dir.is_dir() and sub_dir.is_relative_to(folder.resolve()):
            found.append(sub_dir)
    return found


def copy_aux_files(source_dir: Path, dest_dir: Path) -> list[str]:
    """Copy `source_dir`'s config/tokenizer files and module folders into `dest_dir`, fsync'd.

    Returns the copied names relative to `dest_dir`. Weight files beside them are not copied,
    except inside sentence-transformers module folders (a Dense module keeps its own weights).
    """
    copied = []
    module_files = [path for sub_dir in module_dirs(source_dir) for path in sub_dir.rglob("*")]
    for path in [*aux_files(source_dir), *module_files]:
        check_readable(path, "config or tokenizer file")  # before anything is copied
    for path in aux_files(source_dir):
        shutil.copy2(path, dest_dir / path.name)
        copied.append(path.name)
    for sub_dir in module_dirs(source_dir):
        relative = sub_dir.relative_to(source_dir.resolve())
        shutil.copytree(sub_dir, dest_dir / relative, dirs_exist_ok=True)
        copied.append(str(relative))
    for name in copied:
        copy = dest_dir / name
        if copy.is_dir():
            fsync_tree(copy)
        else:
            fsync_path(copy)
    return copied

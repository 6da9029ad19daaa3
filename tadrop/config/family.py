"""A model family named by one path, as ``tadrop dashboard --family PATH`` takes it.

Two descriptions are understood:

- a YAML run config (any ``tadrop merge`` config with ``base:`` and ``models:``; its
  ``include``, ``exclude``, ``keys`` and ``align_prefixes`` apply). A file holding only those
  keys (no ``method:``) is a family file and is accepted as well;
- a folder holding ``base/`` and one folder per fine-tuned task (the layout
  ``bench/make_family.py`` writes): tasks are named after their folders, in name order.

Only the description is read here; ``tadrop.task_vectors.load_family`` opens the checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tadrop.config.loading import validate_config
from tadrop.config.yaml_source import ConfigError, read_yaml

ENV_FAMILY = "TADROP_FAMILY"  # how `tadrop dashboard --family` hands the path to the app
BASE_FOLDER = "base"
# Any method validates a family-only file: the method is not used to open a family.
_FAMILY_ONLY_METHOD = "task_arithmetic"


@dataclass(frozen=True)
class FamilySpec:
    """Where a family's checkpoints are and how their tensors are matched."""

    label: str
    base: Path
    tasks: dict[str, Path]  # task name -> checkpoint (file or folder), in order
    include: str | None = None
    exclude: str | None = None
    keys: str = "strict"
    align_prefixes: bool = False
    source: Path = field(default=Path())  # the file or folder the spec was read from


def read_family_spec(path: str | os.PathLike[str]) -> FamilySpec:
    """The family a YAML config or a ``base/`` + task folders layout describes (ConfigError
    naming the path and what to pass otherwise)."""
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        return _folder_spec(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such file or folder. Pass a merge config (YAML with base: and models:) "
            f"or a folder holding {BASE_FOLDER}/ and one folder per fine-tuned task."
        )
    return _config_spec(path)


def _config_spec(path: Path) -> FamilySpec:
    data, lines = read_yaml(path)
    if "method" not in data:
        data = {**data, "method": _FAMILY_ONLY_METHOD}
    config = validate_config(data, folder=path.parent, source=path, lines=lines)
    if config.demo is not None:
        raise ConfigError(
            f"{path}: this config uses the demo zoo (demo:); `tadrop dashboard` opens the demo "
            "without --family."
        )
    if config.base is None or not config.models:  # the config's own checks refuse this first
        raise ConfigError(f"{path}: a family needs base: and models:; see docs/cli.md.")
    return FamilySpec(
        label=config.label,
        base=config.base,
        tasks=dict(config.models),
        include=config.include,
        exclude=config.exclude,
        keys=config.keys,
        align_prefixes=config.align_prefixes,
        source=path,
    )


def _folder_spec(folder: Path) -> FamilySpec:
    base = folder / BASE_FOLDER
    if not base.is_dir():
        raise ConfigError(
            f"{folder}: no {BASE_FOLDER}/ folder in it. A family folder holds {BASE_FOLDER}/ "
            "(the pre-trained checkpoint) and one folder per fine-tuned task; or pass a merge "
            "config (YAML with base: and models:)."
        )
    tasks = {
        child.name: child
        for child in sorted(folder.iterdir())
        if child.is_dir() and child.name != BASE_FOLDER and not child.name.startswith(".")
    }
    if not tasks:
        raise ConfigError(
            f"{folder}: only {BASE_FOLDER}/ is there; add one folder per fine-tuned task next to it."
        )
    return FamilySpec(label=folder.name, base=base, tasks=tasks, source=folder)

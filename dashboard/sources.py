"""Which model family a session works on, as a value that can be cached and reopened."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from dashboard.paths import inside_roots
from tadrop.config.family import ENV_FAMILY, read_family_spec
from tadrop.task_vectors import ModelFamily, load_family


@dataclass(frozen=True)
class FamilySource:
    """What the Models page chose: enough to reopen the family in any session."""

    label: str
    base: str
    finetuned: tuple[str, ...]  # checkpoint paths, one per task
    task_names: tuple[str, ...] = ()  # empty: tasks are named after their folders or files
    include: str = ""
    exclude: str = ""
    keys: str = "strict"
    align_prefixes: bool = False  # match keys that differ by a prefix such as "model."
    demo_zoo: str = ""  # the demo zoo's name ("text") when the family is the demo
    demo_size: str = ""  # "quick" or "full"
    zoo_dir: str = ""  # the demo zoo's folder (its evaluation data lives there)
    data_roots: tuple[str, ...] = ()  # every file read must resolve under these (if any)

    @property
    def key(self) -> str:
        """A stable text key for caches."""
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def is_demo(self) -> bool:
        return bool(self.demo_zoo)


def open_family(source: FamilySource) -> ModelFamily:
    """Open the checkpoints of a source (FamilyError/CheckpointError explain any mismatch)."""
    finetuned = (
        dict(zip(source.task_names, source.finetuned, strict=True))
        if source.task_names
        else list(source.finetuned)
    )
    if not source.data_roots:
        return _load(source, finetuned)
    with inside_roots([Path(root) for root in source.data_roots]):
        return _load(source, finetuned)


def _load(source: FamilySource, finetuned: dict[str, str] | list[str]) -> ModelFamily:
    return load_family(
        source.base,
        finetuned,
        include=source.include or None,
        exclude=source.exclude or None,
        keys=source.keys,
        align_prefixes=source.align_prefixes,
    )


def command_line_family(
    argv: Sequence[str] = (), environ: Mapping[str, str] | None = None
) -> FamilySource | None:
    """The family the server was started with: ``--family PATH`` after ``--`` on streamlit's
    command line, else $TADROP_FAMILY (set by ``tadrop dashboard --family``); None if neither.
    The user named these files, so they are read wherever they are (no data-root check)."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--family", default=environ.get(ENV_FAMILY, ""))
    path = parser.parse_known_args(list(argv))[0].family
    if not path:
        return None
    spec = read_family_spec(path)
    return FamilySource(
        label=spec.label,
        base=str(spec.base),
        finetuned=tuple(str(checkpoint) for checkpoint in spec.tasks.values()),
        task_names=tuple(spec.tasks),
        include=spec.include or "",
        exclude=spec.exclude or "",
        keys=spec.keys,
        align_prefixes=spec.align_prefixes,
    )

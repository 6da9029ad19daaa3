"""The zoo's bookkeeping files and how a folder on disk is checked against them.

Two kinds of JSON files, both written atomically:
- `data/<task>/task.json`, one per task, written last for that task: what was trained, the
  accuracies, and a record (size, sha256) of every file the task wrote. A task with a valid
  record is complete and is skipped when a build resumes.
- `manifest.json`, written last of all: the recipe, package versions, the base model's files
  and every task record. A folder without a valid manifest is not a zoo.
Checking sizes is cheap and catches truncated files; hashes are checked on request.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tadrop.io import atomic_write_text
from tadrop.zoo.errors import CorruptZooError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TASK_RECORD_NAME = "task.json"


def sha256_of(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_of(path)}


def file_records(root: Path, paths: list[Path]) -> dict[str, dict[str, Any]]:
    """{path relative to root: {"bytes", "sha256"}} for files that were just written."""
    return {path.relative_to(root).as_posix(): file_record(path) for path in sorted(paths)}


def file_problems(root: Path, records: dict[str, dict[str, Any]], *, hashes: bool) -> list[str]:
    """What is wrong with the recorded files under `root` (empty when all are intact)."""
    problems = []
    for relative, record in records.items():
        path = root / relative
        if not path.is_file():
            problems.append(f"{relative}: missing")
        elif path.stat().st_size != record.get("bytes"):
            problems.append(f"{relative}: {path.stat().st_size} bytes, recorded {record['bytes']}")
        elif hashes and sha256_of(path) != record.get("sha256"):
            problems.append(f"{relative}: sha256 differs from the manifest")
    return problems


def read_json(path: Path, rebuild_hint: str) -> dict[str, Any]:
    """A JSON object from `path`; CorruptZooError (saying how to rebuild) if absent or broken."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptZooError(f"{path}: missing, so the zoo is not built. {rebuild_hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptZooError(f"{path}: unreadable ({error}). {rebuild_hint}") from None
    if not isinstance(loaded, dict):
        raise CorruptZooError(f"{path}: not a JSON object. {rebuild_hint}")
    return loaded


def write_json(path: Path, content: dict[str, Any]) -> Path:
    return atomic_write_text(path, json.dumps(content, indent=2, sort_keys=False) + "\n")


def check_manifest(
    root: Path, manifest: dict[str, Any], *, hashes: bool, rebuild_hint: str
) -> None:
    """Raise CorruptZooError unless every file the manifest lists is intact."""
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CorruptZooError(
            f"{root / MANIFEST_NAME}: format version {manifest.get('format_version')!r}, this "
            f"tadrop reads {FORMAT_VERSION}. {rebuild_hint}"
        )
    records = dict(manifest.get("base", {}).get("files", {}))
    tasks = manifest.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise CorruptZooError(f"{root / MANIFEST_NAME}: lists no tasks. {rebuild_hint}")
    for record in tasks.values():
        records.update(record.get("files", {}))
    problems = file_problems(root, records, hashes=hashes)
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise CorruptZooError(f"{root}: damaged zoo ({shown}). {rebuild_hint}")

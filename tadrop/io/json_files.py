"""Reading the small JSON files beside the weights (shard index, adapter config) with messages
that name the file."""

from __future__ import annotations

import json
from pathlib import Path

from tadrop.io.confine import check_readable
from tadrop.io.errors import CheckpointError


def read_json_file(path: Path, what: str, advice: str) -> object:
    """The parsed JSON of `path` (a `what`, e.g. "shard index"); CheckpointError saying
    `advice` if it is not readable JSON (not UTF-8, bad syntax, nested absurdly deep)."""
    check_readable(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        problem = str(err)
    except RecursionError:
        problem = "nested too deeply"
    raise CheckpointError(f"{path}: not valid JSON ({problem}); {advice}.")

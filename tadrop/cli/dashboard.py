"""``tadrop dashboard --family PATH``: check the family before the server starts, then serve
the dashboard with that family open on every page (``tadrop.cli.demo`` starts the server)."""

from __future__ import annotations

import os

from tadrop.cli.output import Console, checking_inputs
from tadrop.config.family import ENV_FAMILY, FamilySpec, read_family_spec
from tadrop.task_vectors import load_family


def check_family(path: str) -> FamilySpec:
    """The family at ``path``, with its checkpoints opened once (headers only) so that a
    missing file or a mismatched tensor is reported here rather than in the browser."""
    spec = read_family_spec(path)
    load_family(
        spec.base,
        spec.tasks,
        include=spec.include,
        exclude=spec.exclude,
        keys=spec.keys,
        align_prefixes=spec.align_prefixes,
    )
    return spec


def command_dashboard(args, console: Console) -> int:
    """Serve the dashboard; with ``--family`` the app opens that family for every session."""
    from tadrop.cli.demo import command_dashboard as serve

    if args.family:
        with checking_inputs():
            spec = check_family(args.family)
        console.info(f"family {spec.label}: base + {len(spec.tasks)} tasks ({spec.source})")
        # The server is a child process: it reads the family's path from its environment.
        os.environ[ENV_FAMILY] = str(spec.source)
    return serve(args, console)

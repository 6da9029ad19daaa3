"""``tadrop emr expand ARTIFACT --task NAME -o OUT``: one task's full model from EMR's compact
artifact (written by ``tadrop merge`` with method emr and ``output: compact`` or ``both``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tadrop.cli.output import Console, UsageError, checking_inputs


def add_emr_parser(commands: Any, common: argparse.ArgumentParser, parser_class: type) -> None:
    """The ``emr`` command group and its ``expand`` subcommand."""
    emr = commands.add_parser("emr", help="EMR's compact artifact")
    emr_commands = emr.add_subparsers(
        dest="emr_command", metavar="EMR_COMMAND", parser_class=parser_class, required=True
    )
    expand = emr_commands.add_parser(
        "expand", parents=[common], help="rebuild one task's full model from the artifact"
    )
    expand.add_argument("artifact", help="the emr_artifact/ folder of an EMR merge's output")
    expand.add_argument("--task", required=True, help="task whose model to rebuild")
    expand.add_argument("-o", "--output", required=True, help="output model folder")
    expand.add_argument("--base", help="base checkpoint (default: the path in the manifest)")
    expand.add_argument("--overwrite", action="store_true", help="replace an existing output")


def command_emr(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    from tadrop.merge.emr_artifact import expand, read_manifest

    output = Path(args.output).expanduser()
    with checking_inputs():
        manifest = read_manifest(args.artifact)
        if args.task not in manifest["tasks"]:
            raise UsageError(
                f"{args.artifact}: no task {args.task!r}; the tasks are {manifest['tasks']}."
            )
        if output.exists() and not args.overwrite:
            raise UsageError(f"{output} already exists; pass --overwrite to replace it.")
        base = args.base or manifest["base"]
        if not Path(base).expanduser().exists():
            raise UsageError(f"base {base}: no such file or folder; pass --base BASE.")
    console.info(f"expanding task {args.task} from {args.artifact} over {base}")
    path = expand(args.artifact, args.task, output, base=base, overwrite=args.overwrite)
    console.result(
        {"output": str(path), "task": args.task, "size_ratio": manifest["size_ratio"]},
        f"wrote {path} (task {args.task}; the artifact is {manifest['size_ratio']:.3f} x the "
        f"size of {len(manifest['tasks'])} full task models)",
    )
    return {"output": str(path)}

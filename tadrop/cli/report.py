"""``tadrop report``: the reproduction report on the demo zoos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tadrop.cli.output import Console, UsageError, checking_inputs


def command_report(args, console: Console) -> dict[str, Any]:
    from tadrop.report import write_report

    output = Path(args.output).expanduser().absolute()
    with checking_inputs():
        if (
            output.exists()
            and (not output.is_dir() or any(output.iterdir()))
            and not args.overwrite
        ):
            raise UsageError(
                f"{output} already exists and is not empty; pass --overwrite to replace it."
            )
    zoos = tuple(args.zoo or ("text", "image"))
    path = write_report(
        output,
        zoos=zoos,
        size=args.size,
        device=args.device,
        overwrite=args.overwrite,
        log=console.info,
    )
    console.result({"report": str(path)}, f"wrote {path}")
    return {"report": str(path)}

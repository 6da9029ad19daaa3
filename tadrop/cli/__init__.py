"""The ``tadrop`` command: parse arguments, validate inputs, call one library function.

Exit codes: 0 success, 2 bad usage or config (found before any work starts), 1 failure while
working, 130 interrupted (Ctrl-C), 143 SIGTERM, 129 SIGHUP (writers are atomic, so nothing
half-written is left).
Messages go to stderr; ``--json`` prints one JSON object on stdout; ``--quiet`` prints nothing
but errors. See docs/cli.md.
"""

from __future__ import annotations

# THP_MEM_ALLOC_ENABLE is set by tadrop/__init__.py, always imported before this module.
import argparse
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from tadrop.cli.emr import add_emr_parser  # noqa: E402
from tadrop.cli.output import (  # noqa: E402
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_USAGE,
    Console,
    UsageError,
)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors raise instead of exiting, so ``main`` decides the output."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}\n{self.format_usage().strip()}")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    common.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout (for scripts)"
    )
    return common


def _family_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--include", help="merge/analyse only tensors whose name matches this regex"
    )
    parser.add_argument("--exclude", help="leave out tensors whose name matches this regex")
    parser.add_argument(
        "--keys",
        choices=("strict", "common"),
        default="strict",
        help="strict: every checkpoint has the same tensors (default); common: use the shared ones",
    )
    parser.add_argument(
        "--align-prefixes",
        action="store_true",
        help="match keys that differ by a prefix such as 'model.'",
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog="tadrop",
        description="Task-vector analysis and model merging with TADrop sparsification.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add_command in (_add_stats, _add_merge_and_eval, _add_demo_and_dashboard, _add_report):
        add_command(commands, common)
    add_emr_parser(commands, common, _Parser)
    return parser


def _add_stats(commands, common: argparse.ArgumentParser) -> None:
    from tadrop.sparsify.tadrop_drop import DEFAULT_A, DEFAULT_B, DEFAULT_EPS

    stats = commands.add_parser(
        "stats", parents=[common], help="per-tensor statistics of task vectors"
    )
    stats.add_argument("base", help="base (pre-trained) checkpoint: file or folder")
    stats.add_argument(
        "finetuned", nargs="+", help="fine-tuned checkpoints (task name = folder or file name)"
    )
    stats.add_argument(
        "-o",
        "--output",
        default="stats.parquet",
        help="table to write: .parquet (with sketches) or .csv (default stats.parquet)",
    )
    stats.add_argument(
        "-a", type=float, default=DEFAULT_A, help=f"TADrop lower quantile a (default {DEFAULT_A})"
    )
    stats.add_argument(
        "-b", type=float, default=DEFAULT_B, help=f"TADrop upper quantile b (default {DEFAULT_B})"
    )
    stats.add_argument(
        "--eps", type=float, default=DEFAULT_EPS, help=f"TADrop epsilon (default {DEFAULT_EPS})"
    )
    stats.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _family_options(stats)


def _add_merge_and_eval(commands, common: argparse.ArgumentParser) -> None:
    merge = commands.add_parser(
        "merge", parents=[common], help="run the merge a YAML config describes"
    )
    merge.add_argument("config", help="YAML run config (see sample_configs/ and docs/cli.md)")
    merge.add_argument("-o", "--output", help="output folder (overrides output.path)")
    merge.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and print what would be done; read no tensor",
    )
    merge.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    merge.add_argument("--device", default=None, help="overrides the config's device")

    evaluate = commands.add_parser(
        "eval", parents=[common], help="quick evaluation of the merge a config describes"
    )
    evaluate.add_argument("config", help="YAML run config with an eval: block (or a demo: block)")
    evaluate.add_argument("-o", "--output", help="CSV to write (overrides eval.csv)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    evaluate.add_argument("--device", default=None, help="overrides the config's device")


def _add_demo_and_dashboard(commands, common: argparse.ArgumentParser) -> None:
    demo = commands.add_parser("demo", help="the demo model zoo")
    demo_commands = demo.add_subparsers(
        dest="demo_command", metavar="DEMO_COMMAND", parser_class=_Parser, required=True
    )
    build = demo_commands.add_parser(
        "build", parents=[common], help="fine-tune and store the demo zoo"
    )
    build.add_argument("--zoo", choices=("text", "image", "all"), default="text")
    build.add_argument("--size", choices=("quick", "full"), default="quick")
    build.add_argument("--home", help="zoo folder (default $TADROP_HOME)")
    build.add_argument("--force", action="store_true", help="rebuild even if the zoo exists")
    build.add_argument(
        "--threads", type=int, help="torch threads (default $TADROP_BUILD_THREADS, else every core)"
    )

    dashboard = commands.add_parser(
        "dashboard", parents=[common], help="start the Streamlit dashboard"
    )
    dashboard.add_argument("--port", type=int, help="port to serve on (streamlit's default 8501)")
    dashboard.add_argument(
        "--data-root", action="append", help="folder the dashboard may read and write (repeatable)"
    )
    dashboard.add_argument(
        "--family",
        help="open this family on every page: a merge config (base: + models:) or a folder "
        "holding base/ and one folder per task",
    )


def _add_report(commands, common: argparse.ArgumentParser) -> None:
    report = commands.add_parser(
        "report", parents=[common], help="write the reproduction report from the demo zoo"
    )
    report.add_argument(
        "--zoo",
        choices=("text", "image"),
        action="append",
        help="zoo(s) to report on (default both)",
    )
    report.add_argument("--size", choices=("quick", "full"), default="quick")
    report.add_argument(
        "-o",
        "--output",
        default="docs/reproduction",
        help="report folder (default docs/reproduction)",
    )
    report.add_argument("--overwrite", action="store_true", help="replace an existing report")
    report.add_argument("--device", default="auto")


def _dispatch(args: argparse.Namespace, console: Console) -> Any:
    if args.command == "stats":
        from tadrop.cli.stats import command_stats

        return command_stats(args, console)
    if args.command == "merge":
        from tadrop.cli.merge import command_merge

        return command_merge(args, console)
    if args.command == "eval":
        from tadrop.cli.eval import command_eval

        return command_eval(args, console)
    if args.command == "demo":
        from tadrop.cli.demo import command_demo_build

        return command_demo_build(args, console)
    if args.command == "dashboard":
        from tadrop.cli.dashboard import command_dashboard

        return command_dashboard(args, console)
    if args.command == "report":
        from tadrop.cli.report import command_report

        return command_report(args, console)
    if args.command == "emr":
        from tadrop.cli.emr import command_emr

        return command_emr(args, console)
    raise UsageError("no command given; run `tadrop --help` for the list.")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tadrop`` console script; returns the exit code.

    SIGTERM and SIGHUP are handled like Ctrl-C while it runs (exit 143 and 129, and every
    writer's cleanup runs, so no temporary file is left)."""
    from tadrop.io.signals import signals_as_interrupts

    with signals_as_interrupts():
        return _main(list(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    console = Console(quiet="-q" in argv or "--quiet" in argv, as_json="--json" in argv)
    try:
        args = build_parser().parse_args(argv)
        if args.version:
            from tadrop.io.writer import tadrop_version

            print(tadrop_version())
            return EXIT_OK
        console = Console(quiet=getattr(args, "quiet", False), as_json=getattr(args, "json", False))
        result = _dispatch(args, console)
        return result if isinstance(result, int) else EXIT_OK
    except UsageError as error:
        console.error(str(error))
        return EXIT_USAGE
    except KeyboardInterrupt as interrupt:
        from tadrop.io.signals import interrupt_exit_code

        console.error(
            f"interrupted ({interrupt or 'Ctrl-C'}); outputs are written atomically, "
            "so nothing half-written was left."
        )
        return interrupt_exit_code(interrupt)
    except (ValueError, RuntimeError, OSError) as error:
        console.error(str(error))
        return EXIT_RUNTIME
    except Exception as error:  # a bug: the traceback for a report, and still one JSON object
        traceback.print_exc()
        console.error(
            f"internal error ({type(error).__name__}: {error}); please report it with the "
            "traceback above."
        )
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())

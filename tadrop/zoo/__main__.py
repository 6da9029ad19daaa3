"""`python3 -m tadrop.zoo build|show|path`: build a demo zoo, print its accuracies or its folder."""

from __future__ import annotations

# THP_MEM_ALLOC_ENABLE is set by tadrop/__init__.py, imported before this module.
import argparse
import logging
import sys

from tadrop.zoo.recipes import SIZES, ZOOS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m tadrop.zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("build", "build the zoo (keeps finished tasks; a no-op when it is complete)"),
        ("show", "print the accuracies recorded in a built zoo"),
        ("path", "print the zoo's folder"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--zoo", choices=ZOOS, default="text")
        command.add_argument("--size", choices=SIZES, default="quick")
        command.add_argument(
            "--home", help="data folder (default: $TADROP_HOME or ~/.cache/tadrop)"
        )
        if name == "build":
            command.add_argument("--force", action="store_true", help="rebuild every task")
            command.add_argument(
                "--verify-hashes", action="store_true", help="check sha256 of existing files"
            )
    return parser


def _show(zoo_name: str, size: str, home: str | None) -> None:
    from tadrop.zoo.load import load_zoo

    zoo = load_zoo(zoo_name, size, home)
    base, individual = zoo.base_scores(), zoo.individual_scores()
    print(f"{zoo.root}  ({zoo.manifest['build_seconds']['tasks_total']:.0f} s of training)")
    print(f"{'task':20s} {'base':>7s} {'fine-tuned':>10s}")
    for task in zoo.tasks:
        print(f"{task:20s} {base[task]['accuracy']:7.3f} {individual[task]['accuracy']:10.3f}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from tadrop.zoo.errors import ZooError

    try:
        if args.command == "path":
            from tadrop.zoo.load import zoo_path

            print(zoo_path(args.zoo, args.size, args.home))
        elif args.command == "show":
            _show(args.zoo, args.size, args.home)
        else:
            from tadrop.zoo.build import build_zoo

            logging.basicConfig(level=logging.INFO, format="%(message)s")
            root = build_zoo(
                args.zoo, args.size, args.home, force=args.force, verify_hashes=args.verify_hashes
            )
            _show(args.zoo, args.size, args.home)
            print(f"built: {root}")
    except ZooError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python3 -m tadrop.zoo build|show|path`: build a demo zoo, print its accuracies or its folder."""

from __future__ import annotations

# THP_MEM_ALLOC_ENABLE is set by tadrop/__init__.py, imported before this module.
import argparse
import logging
import sys

# The command-line entry point is a face, like tadrop.cli: it hands the build the
# measurements of the experiments layer (the zoo package itself runs none).
from tadrop.experiments.zoo_numbers import family_numbers, zoo_numbers  # noqa: E402
from tadrop.zoo.recipes import SIZES, ZOOS
from tadrop.zoo.synthetic import SYNTHETIC


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m tadrop.zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("build", "build the zoo (keeps finished tasks; a no-op when it is complete)"),
        ("show", "print the accuracies recorded in a built zoo"),
        ("path", "print the zoo's folder"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "--zoo", choices=(*ZOOS, SYNTHETIC), default="text",
            help="synthetic: generated task vectors for teaching (no --size)",
        )  # fmt: skip
        command.add_argument("--size", choices=SIZES, default="quick")
        command.add_argument(
            "--home", help="data folder (default: $TADROP_HOME or ~/.cache/tadrop)"
        )
        if name == "build":
            command.add_argument("--force", action="store_true", help="rebuild every task")
            command.add_argument(
                "--verify-hashes", action="store_true", help="check sha256 of existing files"
            )
            command.add_argument(
                "--threads", type=int, help="torch threads (default: $TADROP_BUILD_THREADS, "
                "else every core)",
            )  # fmt: skip
    return parser


def _show(zoo_name: str, size: str, home: str | None) -> None:
    from tadrop.zoo.load import load_zoo

    zoo = load_zoo(zoo_name, size, home)
    base, individual = zoo.base_scores(), zoo.individual_scores()
    print(f"{zoo.root}  ({zoo.manifest['build_seconds']['tasks_total']:.0f} s of training)")
    spreads = zoo.manifest.get("heterogeneity", {}).get("tasks", {})
    print(f"{'task':20s} {'base':>7s} {'fine-tuned':>10s} {'spread of d':>12s}")
    for task in zoo.tasks:
        spread = spreads.get(task, {}).get("spread")
        shown = f"{spread:12.2f}" if spread is not None else f"{'-':>12s}"
        print(
            f"{task:20s} {base[task]['accuracy']:7.3f} {individual[task]['accuracy']:10.3f}{shown}"
        )
    contrast = zoo.manifest.get("merges", {})
    merges = contrast.get("mean_accuracy", {})
    if merges:
        print(
            "mean accuracy: " + ", ".join(f"{name} {value:.3f}" for name, value in merges.items())
        )
        gaps = {"individual - base": "individual_minus_base",
                "individual - TA(lambda 1)": "individual_minus_task_arithmetic_1.0"}  # fmt: skip
        print(", ".join(f"{label} {100 * contrast[key]:.1f} points" for label, key in gaps.items()
                        if key in contrast))  # fmt: skip


def _show_synthetic(home: str | None) -> None:
    from tadrop.zoo.synthetic import load_synthetic

    family = load_synthetic(home)
    print(f"{family.root}  (SYNTHETIC: generated task vectors, not fine-tuned models)")
    spreads = family.manifest["heterogeneity"]["tasks"]
    for task, record in family.manifest["tasks"].items():
        print(f"{task}: spread of d {spreads[task]['spread']:.2f}; {record['distributions']}")


def _progress_bar():
    """A tqdm bar on stderr driven by build_zoo's progress(fraction, message) callback."""
    from tqdm.auto import tqdm

    bar = tqdm(total=1000, unit="‰", bar_format="{l_bar}{bar}| {elapsed} {postfix}")

    def progress(fraction: float, message: str) -> None:
        task, _, step = (
            message.partition(": ") if message.startswith("task ") else ("", "", message)
        )
        bar.n = round(1000 * fraction)
        bar.set_description_str(task or "zoo")
        bar.set_postfix_str(step)

    return bar, progress


def _build(args: argparse.Namespace) -> None:
    if args.zoo == SYNTHETIC:
        from tadrop.zoo.synthetic import build_synthetic

        print(f"built: {build_synthetic(args.home, force=args.force, measure=family_numbers)}")
        _show_synthetic(args.home)
        return
    from tadrop.zoo.build import build_threads, build_zoo

    build_threads(args.threads)  # refuse a bad count before drawing the bar
    bar, progress = _progress_bar()
    with bar:
        root = build_zoo(
            args.zoo, args.size, args.home, progress=progress, force=args.force,
            verify_hashes=args.verify_hashes, threads=args.threads, measure=zoo_numbers,
        )  # fmt: skip
    _show(args.zoo, args.size, args.home)
    print(f"built: {root}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from tadrop.zoo.errors import ZooError

    try:
        if args.command == "path" and args.zoo == SYNTHETIC:
            from tadrop.zoo.synthetic import synthetic_path

            print(synthetic_path(args.home))
        elif args.command == "path":
            from tadrop.zoo.load import zoo_path

            print(zoo_path(args.zoo, args.size, args.home))
        elif args.command == "show" and args.zoo == SYNTHETIC:
            _show_synthetic(args.home)
        elif args.command == "show":
            _show(args.zoo, args.size, args.home)
        else:
            logging.basicConfig(level=logging.INFO, format="%(message)s")
            _build(args)
    except (ZooError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``tadrop demo build``, ``tadrop dashboard`` and ``tadrop report``, and the demo zoo as the
model family of a config (``demo: {zoo: text, size: quick}``)."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tadrop.cli.output import Console, UsageError, checking_inputs
from tadrop.config import DemoSource
from tadrop.experiments.zoo_numbers import zoo_numbers


def _zoo_progress(console: Console):
    def report(fraction: float, message: str) -> None:
        console.info(f"  {fraction:4.0%} {message}")

    return report


def ensure_zoo(
    zoo: str, size: str, console: Console, *, build: bool = True, home: Path | None = None
):
    """The demo zoo, built first if it is not on disk (``build=False``: ZooError instead)."""
    from tadrop.zoo import ZooError, build_zoo, load_zoo

    try:
        return load_zoo(zoo, size, home)
    except ZooError:
        if not build:
            raise
    console.info(f"building the {size} {zoo} demo zoo (first use; later runs reuse it)...")
    build_zoo(zoo, size, home, progress=_zoo_progress(console), measure=zoo_numbers)
    return load_zoo(zoo, size, home)


def zoo_build_plan(demo: DemoSource, home: Path | None = None) -> dict[str, Any] | None:
    """None when the demo zoo opens; else what a real run builds first (and how long it takes)."""
    from tadrop.zoo import RECIPES, ZooError, load_zoo, zoo_path
    from tadrop.zoo.load import rebuild_hint
    from tadrop.zoo.recipes import MEASURED_BUILD_SECONDS

    try:
        load_zoo(demo.zoo, demo.size, home)
        return None
    except ZooError as error:
        reason = str(error)
    return {
        "zoo": demo.zoo,
        "size": demo.size,
        "folder": str(zoo_path(demo.zoo, demo.size, home)),
        "tasks": list(demo.tasks or RECIPES[(demo.zoo, demo.size)].tasks),
        "expected_seconds": MEASURED_BUILD_SECONDS[(demo.zoo, demo.size)],
        "hint": rebuild_hint(demo.zoo, demo.size),
        "reason": reason,
    }


def zoo_build_text(build: dict[str, Any]) -> str:
    minutes = build["expected_seconds"] / 60
    took = f"about {minutes:.0f} min" if minutes >= 1 else f"about {build['expected_seconds']} s"
    return (
        f"the {build['size']} {build['zoo']} demo zoo is not built yet; it will be built first "
        f"under {build['folder']} ({took} on an idle 2-core machine, once; later runs reuse it). "
        f"{build['hint']} beforehand, or let this run build it. Tensors and memory are known once it is built."
    )


def demo_family_paths(
    demo: DemoSource, console: Console, *, build: bool = True
) -> tuple[Path, dict[str, Path]]:
    """(base folder, {task: folder}) of the demo zoo a config names, limited to ``demo.tasks``."""
    loaded = ensure_zoo(demo.zoo, demo.size, console, build=build)
    models = dict(loaded.task_dirs)
    if demo.tasks:
        unknown = sorted(set(demo.tasks) - set(models))
        if unknown:
            raise UsageError(
                f"demo.tasks names unknown task(s) {unknown}; the {demo.zoo} zoo has {sorted(models)}."
            )
        models = {task: models[task] for task in demo.tasks}
    return loaded.base_dir, models


def command_demo_build(args, console: Console) -> dict[str, Any]:
    from tadrop.zoo import build_zoo
    from tadrop.zoo.build import build_threads

    with checking_inputs():
        build_threads(args.threads)  # a bad --threads is refused before anything is built
    zoos = ("text", "image") if args.zoo == "all" else (args.zoo,)
    home = Path(args.home).expanduser().absolute() if args.home else None
    built = {}
    for zoo in zoos:
        console.info(f"building the {args.size} {zoo} zoo...")
        path = build_zoo(
            zoo,
            args.size,
            home,
            progress=_zoo_progress(console),
            force=args.force,
            threads=args.threads,
            measure=zoo_numbers,
        )
        built[zoo] = str(path)
    console.result({"zoos": built}, "\n".join(f"{zoo}: {path}" for zoo, path in built.items()))
    return built


def dashboard_command(
    port: int | None, data_roots: list[str] | None
) -> tuple[list[str], dict[str, str]]:
    """The streamlit command line and environment that start the dashboard."""
    # Located, not imported: the library never imports the dashboard (import-linter contract).
    spec = importlib.util.find_spec("dashboard")
    if spec is None or spec.origin is None:
        raise UsageError("the dashboard package is not installed; run ./install.sh first.")
    app = Path(spec.origin).resolve().parent / "app.py"
    command = [
        sys.executable,
        str(app.parent / "serve.py"),  # `streamlit run` after importing what the pages need
        "run",
        str(app),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    if port is not None:
        command += ["--server.port", str(port)]
    environ = dict(os.environ)
    if data_roots:
        environ["TADROP_DATA_ROOT"] = os.pathsep.join(
            str(Path(root).expanduser().absolute()) for root in data_roots
        )
    return command, environ


def command_dashboard(args, console: Console) -> int:
    with checking_inputs():
        for root in args.data_root or []:
            if not Path(root).expanduser().is_dir():
                raise UsageError(f"--data-root {root}: no such folder.")
        command, environ = dashboard_command(args.port, args.data_root)
    console.info("starting: " + " ".join(command))
    server = subprocess.Popen(command, env=environ, preexec_fn=_dies_with_parent(os.getpid()))
    try:
        return server.wait()
    finally:  # Ctrl-C, SIGTERM and SIGHUP arrive here as KeyboardInterrupt (tadrop.io.signals)
        stop_child(server)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _dies_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when the parent dies, even by SIGKILL
    (Linux ``prctl(PR_SET_PDEATHSIG)``); None elsewhere, where only the handled signals stop it."""
    if not sys.platform.startswith("linux"):
        return None

    def set_death_signal() -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent_pid:  # the parent died before prctl: no signal will come
            os.kill(os.getpid(), signal.SIGTERM)

    return set_death_signal


def stop_child(child: subprocess.Popen, *, grace_s: float = 10.0) -> None:
    """SIGTERM the child if it still runs, wait ``grace_s`` for it to stop, then SIGKILL it."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()

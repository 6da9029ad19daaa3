"""Time to the first figure in the served dashboard on a realistic family (issue 12 §2):
target = the time to compute the family's statistics alone plus less than 5 s.

For each condition (idle, then under bench/background_load.py's busy loops), in one run:

    stats_s         ``compute_stats`` of the whole family in this process (no cache), alone
    server_s        ``tadrop dashboard --family FAMILY`` until streamlit answers its health check
                    (headless Chromium is started before the server, as a user's browser is)
    first_figure_s  from the health check: the browser opens the Sparsity landscape page until
                    the first plotly figure is drawn; the statistics cache ($TADROP_HOME/cache)
                    is empty, so the page shows the statistics' progress first (the server
                    starts computing them as it starts: dashboard/jobs.py)
    launch_s        from starting ``tadrop dashboard`` to that first figure (server_s +
                    first_figure_s): what a user waits
    overhead_s      launch_s - stats_s (target < 5; it includes the server's start-up)
    reopen_s        a second browser session on the same server (statistics cached)

The family is a folder written by bench/make_family.py (base/ + one folder per task).

    python3 bench/bench_dashboard_family.py --family /work/bench_data/family-clip-vit-b32
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO_ROOT)]

import pandas as pd  # noqa: E402
from background_load import condition, parse_conditions  # noqa: E402
from bench_dashboard import (  # noqa: E402
    add_chromium_argument,
    free_port,
    launch_chromium,
    open_until_figure,
    wait_healthy,
)
from processes import machine_line, warm_page_cache  # noqa: E402

OVERHEAD_TARGET_S = 5.0


def stats_alone(family_dir: Path) -> float:
    """Seconds of ``compute_stats`` over the whole family, cache off (checkpoints opened first)."""
    from tadrop.config.family import read_family_spec
    from tadrop.stats import compute_stats
    from tadrop.task_vectors import load_family

    spec = read_family_spec(family_dir)
    family = load_family(spec.base, spec.tasks)
    started = time.perf_counter()
    compute_stats(family, device="cpu", cache=False)
    return time.perf_counter() - started


def serve_and_open(family_dir: Path, chromium: str, timeout_s: float) -> dict[str, float]:
    """Start a browser, then ``tadrop dashboard --family`` with an empty TADROP_HOME; time the
    landscape page's first figure in a fresh browser session, twice."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    scratch = os.environ.get("BENCH_SCRATCH")  # where the empty TADROP_HOME goes (else /tmp)
    with (
        tempfile.TemporaryDirectory(prefix="dashboard-home-", dir=scratch) as home,
        sync_playwright() as playwright,
    ):
        browser = launch_chromium(playwright, chromium)
        env = {**os.environ, "TADROP_HOME": home, "PYTHONPATH": str(REPO_ROOT)}
        command = [sys.executable, "-m", "tadrop.cli", "dashboard", "--family", str(family_dir),
                   "--port", str(port), "--quiet"]  # fmt: skip
        log_path = Path(home) / "server.log"  # streamlit's messages, shown only if it fails
        started = time.perf_counter()
        with open(log_path, "wb") as log:
            server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
        try:
            wait_healthy(port, 120)
            server_s = time.perf_counter() - started
            url = f"http://127.0.0.1:{port}/landscape"
            first = open_until_figure(browser, url, timeout_s)
            reopen = open_until_figure(browser, url, timeout_s)
        except Exception:
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            server.terminate()  # tadrop's CLI stops its streamlit child on SIGTERM
            server.wait(timeout=30)
            browser.close()
    return {"server_s": server_s, "first_figure_s": first, "launch_s": server_s + first,
            "reopen_s": reopen}  # fmt: skip


def measure(family_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    stats_s = stats_alone(family_dir)
    print(f"  statistics alone: {stats_s:.1f} s", flush=True)
    served = serve_and_open(family_dir, args.chromium, args.timeout)
    overhead = served["launch_s"] - stats_s
    return {"stats_s": stats_s, **served, "overhead_s": overhead,
            "meets_target": overhead < OVERHEAD_TARGET_S}  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", required=True, help="folder with base/ and task folders")
    parser.add_argument("--load", default="idle,loaded", help="idle, loaded or both")
    parser.add_argument("--load-kind", choices=("spin", "memory"), default="spin")
    add_chromium_argument(parser)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per page load")
    parser.add_argument("--out", default=str(BENCH_DIR / "out"), help="folder for the CSV")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    family_dir = Path(args.family).resolve()
    warmed = warm_page_cache([path for path in family_dir.iterdir() if path.is_dir()])
    print(f"family {family_dir.name}: {warmed / 2**30:.2f} GiB in the page cache")
    rows = []
    for name in parse_conditions(args.load):
        with condition(name, args.load_kind) as description:
            print(f"== {description} ({os.getloadavg()[0]:.2f} load before) ==", flush=True)
            rows.append({"load": name, **measure(family_dir, args)})
            print({key: round(value, 2) for key, value in rows[-1].items() if key != "load"})
    table = pd.DataFrame(rows).round(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"dashboard_family_{family_dir.name}.csv"
    table.assign(machine=machine_line(), date=time.strftime("%Y-%m-%d")).to_csv(
        csv_path, index=False
    )
    print(table.to_string(index=False))
    print(f"wrote {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

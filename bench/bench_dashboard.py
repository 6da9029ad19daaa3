"""Dashboard responsiveness: drop rates for a new (a, b) from the statistics table, and the time
to the first figure after opening the app.

1. Recompute: TADrop's d = Q_a / (Q_b + eps) for every row from the quantile sketches
   (``tadrop.stats.drop_rates_from_sketch``, what the Sparsity landscape page calls on each
   slider move), and the whole page update (rates, overall sparsity, its three figures built),
   for the demo zoo's table and for a synthetic table shaped like 8 tasks of a 7B Llama
   (32 layers x 9 tensors = 2304 rows). Targets: < 100 ms (demo) and < 1 s (7B).
2. First figure: ``streamlit run dashboard/app.py`` on a free port, headless Chromium opens the
   Sparsity landscape page; seconds until the first plotly figure is drawn, in a fresh session
   with cold caches (statistics computed) and again with warm ones. Needs a built demo zoo
   (``--build-demo`` builds the quick text zoo first, minutes) and Chromium.

    python3 bench/bench_dashboard.py [--home DIR] [--build-demo] [--no-browser]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(REPO_ROOT)]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tadrop.names import component_group, parse_name  # noqa: E402
from tadrop.stats import SKETCH_POINTS, drop_rates_from_sketch, overall_sparsity  # noqa: E402

LLAMA7B_LAYER = {  # the 9 tensors of one Llama-2-7B layer: name -> shape
    "self_attn.q_proj.weight": (4096, 4096),
    "self_attn.k_proj.weight": (4096, 4096),
    "self_attn.v_proj.weight": (4096, 4096),
    "self_attn.o_proj.weight": (4096, 4096),
    "mlp.gate_proj.weight": (11008, 4096),
    "mlp.up_proj.weight": (11008, 4096),
    "mlp.down_proj.weight": (4096, 11008),
    "input_layernorm.weight": (4096,),
    "post_attention_layernorm.weight": (4096,),
}
FIGURE_SELECTOR = ".js-plotly-plot"  # plotly's root element, present once a figure is drawn


def llama7b_tensors(layers: int = 32) -> list[tuple[str, tuple[int, ...]]]:
    return [
        (f"model.layers.{layer}.{name}", shape)
        for layer in range(layers)
        for name, shape in LLAMA7B_LAYER.items()
    ]


def synthetic_stats(
    tensors: list[tuple[str, tuple[int, ...]]], tasks: list[str], seed: int = 0
) -> pd.DataFrame:
    """A statistics table with the columns of ``compute_stats``: sketches are sorted |N(0, s^2)|
    draws (monotone, like real quantile sketches) with a scale per row."""
    rng = np.random.default_rng(seed)
    count = len(tensors) * len(tasks)
    sketches = np.sort(np.abs(rng.standard_normal((count, SKETCH_POINTS))), axis=1)
    sketches *= 10.0 ** rng.uniform(-4, -2, size=(count, 1))
    rows = []
    for index, (task, (name, shape)) in enumerate(
        (task, tensor) for task in tasks for tensor in tensors
    ):
        parsed = parse_name(name)
        sketch = sketches[index]
        q_a, q_b = np.interp([0.5, 0.95], np.linspace(0, 1, SKETCH_POINTS), sketch)
        rows.append({
            "task": task, "tensor": name, "layer": parsed.layer, "kind": parsed.kind,
            "group": component_group(parsed.kind), "param": parsed.param,
            "shape": "x".join(map(str, shape)), "numel": int(np.prod(shape)),
            "mean": 0.0, "std": float(sketch.mean()) * 1.25, "mean_abs": float(sketch.mean()),
            "l2": float(sketch.mean()) * np.sqrt(np.prod(shape)), "max_abs": float(sketch[-1]),
            "zero_frac": 0.0, "kurtosis": float(rng.uniform(0, 3)), "q_a": q_a, "q_b": q_b,
            "drop_rate": q_a / q_b, "sketch": sketch,
        })  # fmt: skip
    table = pd.DataFrame(rows)
    table["layer"] = table["layer"].astype("Int64")
    return table


def demo_table(home: Path) -> tuple[pd.DataFrame, str, float | None]:
    """(table, description, seconds to compute it): the built demo zoo's real statistics, else a
    synthetic table with the demo backbone's tensors (all-MiniLM-L6-v2) and the text zoo's tasks."""
    from tadrop import zoo

    try:
        loaded = zoo.load_zoo("text", "quick", home=home)
    except zoo.ZooError:
        loaded = None
    if loaded is not None:
        from tadrop.stats import compute_stats
        from tadrop.task_vectors import load_family

        family = load_family(loaded.base_dir, dict(loaded.task_dirs))
        started = time.perf_counter()
        table = compute_stats(family, device="cpu")
        return table, f"demo zoo ({home})", time.perf_counter() - started
    from tadrop.io import open_checkpoint
    from tadrop.zoo.backbone_text import TextBackbone
    from tadrop.zoo.recipes import TEXT_TASKS

    checkpoint = open_checkpoint(TextBackbone.pretrained_dir())
    tensors = [
        (name, checkpoint.shape(name))
        for name in checkpoint.keys()
        if checkpoint.dtype(name).is_floating_point
    ]
    tasks = list(TEXT_TASKS)
    return synthetic_stats(tensors, tasks), "demo-shaped synthetic (zoo not built)", None


def landscape_update(table: pd.DataFrame, a: float, b: float, eps: float) -> None:
    """What the Sparsity landscape page computes when a slider moves (figures built, not drawn)."""
    from dashboard import figures

    rates = table[["task", "tensor", "layer", "kind", "numel"]].copy()
    rates["drop_rate"] = drop_rates_from_sketch(table, a, b, eps)
    sparsity = overall_sparsity(table, rates["drop_rate"])
    figures.drop_rate_heatmap(rates)
    figures.drop_rate_by_kind_layer(rates)
    figures.uniform_rate_contrast(rates, sparsity.to_dict())


def time_recompute(table: pd.DataFrame, repeats: int, seed: int = 1) -> dict[str, float]:
    """Median and worst seconds over ``repeats`` random (a, b) for both measurements."""
    rng = np.random.default_rng(seed)
    pairs = [
        (round(float(a), 2), round(float(a + rng.uniform(0.05, 0.99 - a)), 3))
        for a in rng.uniform(0.05, 0.8, repeats)
    ]
    landscape_update(table, 0.5, 0.95, 1e-12)  # imports and first-call costs out of the way
    rates_s, page_s = [], []
    for a, b in pairs:
        started = time.perf_counter()
        drop_rates_from_sketch(table, a, b, 1e-12)
        rates_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        landscape_update(table, a, b, 1e-12)
        page_s.append(time.perf_counter() - started)
    return {
        "rates_median_ms": statistics.median(rates_s) * 1e3,
        "rates_max_ms": max(rates_s) * 1e3,
        "page_median_ms": statistics.median(page_s) * 1e3,
        "page_max_ms": max(page_s) * 1e3,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/_stcore/health", timeout=2
            ) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit did not answer on port {port} within {timeout_s:.0f} s")


def open_until_figure(browser, url: str, timeout_s: float) -> float:
    """Seconds from opening ``url`` in a fresh browser context to the first drawn figure."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_selector(FIGURE_SELECTOR, state="visible", timeout=timeout_s * 1000)
        return time.perf_counter() - started
    finally:
        context.close()


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]  # fmt: skip


def add_chromium_argument(parser: argparse.ArgumentParser) -> None:
    """``--chromium``: Debian's binary when installed, else playwright's own."""
    parser.add_argument(
        "--chromium",
        default="/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else "",
        help="Chromium binary (default: playwright's own)",
    )


def launch_chromium(playwright, chromium: str):
    """A headless Chromium with the flags this machine needs."""
    launch = {"executable_path": chromium} if chromium else {}
    return playwright.chromium.launch(headless=True, args=CHROMIUM_ARGS, **launch)


def time_first_figure(home: Path, chromium: str, timeout_s: float = 600) -> dict[str, float]:
    """Server start-up, then cold and warm first-figure times on the Sparsity landscape page."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**os.environ, "TADROP_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
               "--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]  # fmt: skip
    started = time.perf_counter()
    server = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_healthy(port, 120)
        server_s = time.perf_counter() - started
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright, chromium)
            url = f"http://127.0.0.1:{port}/landscape"
            cold = open_until_figure(browser, url, timeout_s)
            warm = open_until_figure(browser, url, timeout_s)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"server_start_s": server_s, "first_figure_cold_s": cold, "first_figure_warm_s": warm}


def build_demo(home: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "tadrop.cli",
        "demo",
        "build",
        "--zoo",
        "text",
        "--size",
        "quick",
        "--home",
        str(home),
    ]
    subprocess.run(
        command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, check=True
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_home = os.environ.get("TADROP_HOME", str(REPO_ROOT / ".tadrop_home"))
    parser.add_argument("--home", default=default_home, help="demo zoo home ($TADROP_HOME)")
    parser.add_argument(
        "--build-demo", action="store_true", help="build the quick text zoo first if absent"
    )
    parser.add_argument("--no-browser", action="store_true", help="skip the time to first figure")
    add_chromium_argument(parser)
    parser.add_argument("--repeats", type=int, default=20, help="(a, b) pairs timed per table")
    parser.add_argument("--out", default=str(BENCH_DIR / "out"), help="folder for the CSVs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    home = Path(args.home).expanduser().resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.build_demo:
        build_demo(home)
    demo, demo_label, stats_s = demo_table(home)
    tables = [
        ("demo", demo_label, demo, 0.1),
        (
            "llama7b-8tasks",
            "synthetic 8 tasks x 32 layers x 9 tensors",
            synthetic_stats(llama7b_tensors(), [f"task{i}" for i in range(8)]),
            1.0,
        ),
    ]
    rows = []
    for table_name, description, table, target_s in tables:
        timing = time_recompute(table, args.repeats)
        rows.append({"table": table_name, "rows": len(table), "source": description, **{k: round(v, 1) for k, v in timing.items()},
                     "target_ms": target_s * 1e3, "rates_meet_target": timing["rates_max_ms"] < target_s * 1e3})  # fmt: skip
    recompute = pd.DataFrame(rows)
    stamp = {"date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count()}
    recompute.assign(**stamp).to_csv(out / "dashboard_recompute.csv", index=False)
    print(
        "Drop rates for a new (a, b) from the sketches (rates) and the whole landscape update (page):"
    )
    print(recompute.to_string(index=False))
    if stats_s is not None:
        print(f"(computing the demo's statistics table once took {stats_s:.1f} s)")
    if args.no_browser:
        return 0
    if demo_label.startswith("demo-shaped"):
        print(f"time to first figure: skipped, no demo zoo under {home} (pass --build-demo).")
        return 0
    figure = time_first_figure(home, args.chromium)
    pd.DataFrame([{**{k: round(v, 2) for k, v in figure.items()}, **stamp}]).to_csv(
        out / "dashboard_first_figure.csv", index=False
    )
    print("Time to first figure on the Sparsity landscape page (seconds):")
    print(pd.DataFrame([figure]).round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

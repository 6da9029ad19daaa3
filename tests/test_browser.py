"""The dashboard in a real browser: ``streamlit run`` on a free port, driven by headless Chromium
(Playwright's Python package with the Debian chromium; never ``playwright install``).

Screenshots go to ``test-artifacts/``. With ``TADROP_UPDATE_SCREENSHOTS=1`` the page
screenshots are also written to ``docs/screenshots/`` for the README.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ARTIFACTS = REPO / "test-artifacts" / "browser"
SCREENSHOTS = REPO / "docs" / "screenshots"
TIMEOUT_MS = 120_000

if not CHROMIUM.is_file():
    pytest.skip(
        "no /usr/bin/chromium (Debian package `chromium`); the browser test needs it",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout_s} s")


@pytest.fixture(scope="module")
def dashboard_url(quick_text_zoo, tmp_path_factory) -> Iterator[str]:
    """The app served by ``streamlit run`` on the quick text zoo, data root in a temp folder."""
    data_root = tmp_path_factory.mktemp("browser_root")
    port = free_port()
    environ = {
        **os.environ,
        "TADROP_HOME": str(quick_text_zoo.root.parent.parent),  # <home>/zoo/text-quick
        "TADROP_DATA_ROOT": str(data_root),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    log = (ARTIFACTS / "streamlit.log").open("w") if _artifacts() else subprocess.DEVNULL
    command = [
        sys.executable, "-m", "streamlit", "run", str(REPO / "dashboard" / "app.py"),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=REPO, env=environ, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def _artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.get_by_role("heading", name="Models").wait_for()
    return page


def wait_for_idle(page) -> None:
    """Until the app's script has finished its run (streamlit marks the app root)."""
    page.wait_for_timeout(400)  # let a rerun that was just triggered start
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()


def open_page(page, title: str, heading: str) -> None:
    page.get_by_role("link", name=title).click()
    page.get_by_role("heading", name=heading).wait_for()
    wait_for_idle(page)


def screenshot(page, name: str) -> None:
    path = _artifacts() / f"{name}.png"
    page.screenshot(path=str(path))
    if os.environ.get("TADROP_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")


def metric_value(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return metric.locator('[data-testid="stMetricValue"]').inner_text()


def test_slider_merge_and_export_in_a_real_browser(browser, dashboard_url):
    page = new_page(browser, dashboard_url)
    page.get_by_text("Tensors merged").wait_for()
    wait_for_idle(page)
    screenshot(page, "models")

    open_page(page, "Heterogeneity", "Heterogeneity of task vectors")
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
    screenshot(page, "heterogeneity")

    open_page(page, "Sparsity landscape", "Sparsity landscape")
    before = metric_value(page, "All tasks")
    slider_b = page.get_by_role("slider", name="b (upper quantile)")
    slider_b.focus()
    for _ in range(50):  # 0.950 -> 0.900 in steps of 0.001
        page.keyboard.press("ArrowLeft")
    page.wait_for_function(
        "([before]) => [...document.querySelectorAll('[data-testid=stMetric]')]"
        ".some(node => node.innerText.includes('All tasks') && !node.innerText.includes(before))",
        arg=[before],
    )
    wait_for_idle(page)
    assert metric_value(page, "All tasks") != before
    screenshot(page, "landscape")

    # Merge two of the demo's tasks (same code path as six, a third of the time).
    open_page(page, "Models", "Models")
    tasks = keep_first_tasks(page, 2)
    open_page(page, "Merge & evaluate", "Merge & evaluate")
    page.get_by_role("button", name="Run merge").click()
    results = page.locator('[data-testid="stTable"]')
    results.wait_for()
    wait_for_idle(page)
    table_text = results.inner_text()
    for task in tasks:
        assert task in table_text
    assert "emr + tadrop" in table_text and "#2 emr" in table_text
    screenshot(page, "merge")

    open_page(page, "Export", "Export")
    page.get_by_role("button", name="Write the merged checkpoint").click()
    page.get_by_text("atomically").wait_for()
    assert "tasks:" in page.locator('[data-testid="stCode"]').last.inner_text()
    screenshot(page, "export")

    open_page(page, "Learn", "Learn: task vectors and TADrop")
    page.get_by_text("What the pages show").wait_for()
    page.locator(".katex").nth(1).wait_for()  # both formulas typeset
    screenshot(page, "learn")


def keep_first_tasks(page, count: int) -> list[str]:
    """On Models, remove all but the first ``count`` demo tasks; returns the kept names."""
    chooser = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Tasks to merge")
    names = chooser.locator("[data-tag] [title]").all_inner_texts()
    for name in names[count:]:
        page.get_by_role("button", name=f"Remove {name}").click()
        wait_for_idle(page)
    assert metric_value(page, "Tasks") == str(count)
    return names[:count]


def test_two_browser_sessions_keep_their_own_runs(browser, dashboard_url):
    first, second = new_page(browser, dashboard_url), new_page(browser, dashboard_url)
    open_page(first, "Merge & evaluate", "Merge & evaluate")
    choose(first, "Merge method", "task_arithmetic")
    choose(first, "Sparsifier", "none")
    first.get_by_text("Evaluate on the demo's test data").click()  # a quick, data-free run
    wait_for_idle(first)
    first.get_by_role("button", name="Run merge").click()
    first.get_by_text("Runs in this session").wait_for()
    open_page(second, "Merge & evaluate", "Merge & evaluate")
    assert second.get_by_text("No run yet").is_visible()
    assert not second.get_by_text("Runs in this session").is_visible()


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the select box labelled ``label``."""
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_idle(page)


def test_cancel_stops_a_running_merge(browser, dashboard_url):
    page = new_page(browser, dashboard_url)
    open_page(page, "Merge & evaluate", "Merge & evaluate")
    page.get_by_role("button", name="Run merge").click()
    page.locator('[data-testid="stProgress"]').first.wait_for()
    page.get_by_role("button", name="Cancel").click()
    page.get_by_text("Cancelled; the unfinished merge was not kept.").wait_for()
    wait_for_idle(page)
    assert page.get_by_text("No run yet").is_visible()

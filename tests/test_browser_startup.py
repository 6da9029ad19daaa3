"""The dashboard's first seconds in a real browser (issue 15 bug 5): the sidebar never lists
file names (Streamlit's legacy multipage mode) before the page list of ``st.navigation``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli_dashboard import _answers, _free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip("no /usr/bin/chromium (Debian package `chromium`)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")

NAV_LINKS = '[data-testid="stSidebarNav"] a'


def sidebar_names_until_ready(url: str, timeout_s: float = 120) -> set[str]:
    """Every sidebar link text seen from the first paint until the Models heading shows."""
    seen: set[str] = set()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.goto(url, wait_until="commit")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            texts = page.locator(NAV_LINKS).all_inner_texts()  # "icon\n\nTitle"
            seen |= {text.strip().splitlines()[-1] for text in texts if text.strip()}
            if page.get_by_role("heading", name="Models").count():
                break
            page.wait_for_timeout(25)
        # The heading can paint before the navigation: once the page is up, read the sidebar
        # again when its links are there (a slow machine showed the heading first).
        page.locator(NAV_LINKS).first.wait_for(timeout=timeout_s * 1000)
        texts = page.locator(NAV_LINKS).all_inner_texts()
        seen |= {text.strip().splitlines()[-1] for text in texts if text.strip()}
        browser.close()
    return seen


def test_the_sidebar_shows_only_page_titles_from_the_start(quick_text_zoo, tmp_path):
    port = _free_port()
    environ = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TADROP_HOME": str(quick_text_zoo.root.parent.parent),  # <home>/zoo/text-quick
        "TADROP_DATA_ROOT": str(tmp_path),
    }
    command = [
        sys.executable, "-m", "streamlit", "run", str(REPO / "dashboard" / "app.py"),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.fileWatcherType", "none",
    ]  # fmt: skip
    server = subprocess.Popen(
        command, cwd=tmp_path, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not _answers(port):
            assert server.poll() is None and time.monotonic() < deadline, "streamlit did not start"
            time.sleep(0.2)
        seen = sidebar_names_until_ready(f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=15)
    assert "Models" in seen
    assert not seen & {"app", "export", "heterogeneity", "landscape", "learn", "merge", "models"}

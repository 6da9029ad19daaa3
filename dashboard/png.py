"""PNG images of Plotly figures, rendered offline by the local Chromium through Playwright.

Plotly's own ``to_image`` needs kaleido, which is not installed here; the same plotly.js that
draws the figure in the browser can export it (``Plotly.toImage``) in a headless Chromium.
``png_renderer_problem`` says why PNG export is not possible (then export HTML only).
No streamlit import.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import plotly.graph_objects as go

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def chromium_path() -> Path | None:
    """The Chromium executable to render with, if one is installed."""
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    found = shutil.which("chromium")
    return Path(found) if found else None


def png_renderer_problem() -> str | None:
    """None when PNGs can be rendered; else what is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    if chromium_path() is None:
        return "no Chromium at /usr/bin/chromium (Debian package `chromium`)"
    return None


def figures_to_png(
    figures: Mapping[str, go.Figure], *, width: int = 1100, height: int = 600, scale: float = 2.0
) -> dict[str, bytes]:
    """PNG bytes of each figure, all rendered in one headless Chromium session.

    Raises RuntimeError naming what is missing when no renderer is available.
    """
    problem = png_renderer_problem()
    if problem is not None:
        raise RuntimeError(f"PNG export is not available: {problem}; export HTML instead.")
    from playwright.sync_api import sync_playwright

    images: dict[str, bytes] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path()), args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.set_content(_blank_page_with_plotly())
            for name, figure in figures.items():
                data_url = page.evaluate(
                    """async ([spec, width, height, scale]) => {
                        const node = document.createElement("div");
                        document.body.appendChild(node);
                        await Plotly.newPlot(node, spec.data, spec.layout);
                        const url = await Plotly.toImage(node,
                            {format: "png", width: width, height: height, scale: scale});
                        Plotly.purge(node);
                        node.remove();
                        return url;
                    }""",
                    [json.loads(figure.to_json()), width, height, scale],
                )
                images[name] = base64.b64decode(data_url.split(",", 1)[1])
        finally:
            browser.close()
    return images


def _blank_page_with_plotly() -> str:
    """An HTML page with plotly.js inlined (no network)."""
    from plotly.offline import get_plotlyjs

    return f"<html><head><script>{get_plotlyjs()}</script></head><body></body></html>"

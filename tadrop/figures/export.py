"""Static images of plotly figures (SVG, PNG, ...) with kaleido, in the local Chromium.

kaleido 1.x drives a Chromium through choreographer; it finds the browser through the
``BROWSER_PATH`` environment variable, which ``export_images`` points at Debian's
``/usr/bin/chromium`` (installed by install.sh) unless it is already set. It never downloads a
browser: without one, ``export_problem`` says what is missing and the export raises.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from tadrop.figures.base import EXPORT_TEMPLATE

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> Path | None:
    """The browser kaleido renders with: ``$BROWSER_PATH``, else the Debian Chromium."""
    configured = os.environ.get("BROWSER_PATH")
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    found = shutil.which("chromium")
    return Path(found) if found else None


def export_problem() -> str | None:
    """None when figures can be exported as images; else what is missing."""
    if importlib.util.find_spec("kaleido") is None:
        return "the kaleido Python package is not installed (./install.sh installs it)"
    if os.environ.get("BROWSER_PATH") and chromium_path() is None:
        return f"BROWSER_PATH={os.environ['BROWSER_PATH']} is not a file"
    if chromium_path() is None:
        return "no Chromium at /usr/bin/chromium (Debian package `chromium`)"
    return None


@contextlib.contextmanager
def _browser() -> Iterator[None]:
    """BROWSER_PATH set to the found Chromium for the export (kaleido reads it), then restored."""
    problem = export_problem()
    if problem is not None:
        raise RuntimeError(
            f"Image export is not available: {problem}. Run ./install.sh, or set BROWSER_PATH "
            "to a Chromium executable."
        )
    previous = os.environ.get("BROWSER_PATH")
    os.environ["BROWSER_PATH"] = str(chromium_path())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("BROWSER_PATH", None)
        else:
            os.environ["BROWSER_PATH"] = previous


def export_images(
    figures: Mapping[str, go.Figure],
    image_format: str,
    *,
    width: int = 1100,
    height: int = 600,
    scale: float = 1.0,
) -> dict[str, bytes]:
    """The image bytes of each figure (``image_format``: svg, png, ...), all rendered in one
    browser session, each with the white export template."""
    if not figures:
        return {}
    styled = [
        go.Figure(figure).update_layout(template=EXPORT_TEMPLATE) for figure in figures.values()
    ]
    # kaleido's batch call writes files (not file objects): render into a temporary folder.
    with _browser(), tempfile.TemporaryDirectory(prefix="tadrop-figures-") as folder:
        paths = [Path(folder) / f"{index}.{image_format}" for index in range(len(styled))]
        pio.write_images(
            styled, paths, format=image_format, width=width, height=height, scale=scale
        )
        return {name: path.read_bytes() for name, path in zip(figures, paths, strict=True)}


def figures_to_svg(figures: Mapping[str, go.Figure], **size: int) -> dict[str, str]:
    """SVG text of each figure (see ``export_images``)."""
    return {name: image.decode() for name, image in export_images(figures, "svg", **size).items()}

"""PNG images of Plotly figures for the Export page: kaleido in the local Chromium
(``tadrop.figures.export``, which never downloads a browser). No streamlit import."""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go

from tadrop.figures.export import export_images, export_problem


def png_renderer_problem() -> str | None:
    """None when PNGs can be rendered; else what is missing."""
    return export_problem()


def figures_to_png(
    figures: Mapping[str, go.Figure], *, width: int = 1100, height: int = 600, scale: float = 2.0
) -> dict[str, bytes]:
    """PNG bytes of each figure, all rendered in one browser session.

    Raises RuntimeError naming what is missing when no renderer is available.
    """
    return export_images(figures, "png", width=width, height=height, scale=scale)

"""Small SVG charts for the reproduction report (matplotlib is not a dependency).

Three kinds: a line chart (accuracy vs sparsity), a heatmap (task x tensor drop rates) and
grouped bars (drop rate per component). Each returns the SVG document as a string.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FONT = 'font-family="Helvetica, Arial, sans-serif"'


def _text(
    x: float,
    y: float,
    text: str,
    size: int = 12,
    anchor: str = "middle",
    rotate: float | None = None,
    weight: str = "normal",
) -> str:
    transform = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" {FONT}{transform}>{escape(text)}</text>'


def _document(width: int, height: int, body: list[str], title: str) -> str:
    head = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    background = f'<rect width="{width}" height="{height}" fill="white"/>'
    return "\n".join(
        [head, background, _text(width / 2, 22, title, 15, weight="bold"), *body, "</svg>\n"]
    )


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 2.5, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 400,
) -> str:
    """One polyline with markers per series; axes fit the data with a 5% margin."""
    points = [
        point for values in series.values() for point in values if all(map(math.isfinite, point))
    ]
    if not points:
        return _document(width, height, [_text(width / 2, height / 2, "no data")], title)
    left, right, top, bottom = 70, width - 170, 40, height - 55
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    x_pad = (x_high - x_low) * 0.05 or 0.05
    y_pad = (y_high - y_low) * 0.08 or 0.05
    x_low, x_high, y_low, y_high = x_low - x_pad, x_high + x_pad, y_low - y_pad, y_high + y_pad

    def sx(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * (right - left)

    def sy(y: float) -> float:
        return bottom - (y - y_low) / (y_high - y_low) * (bottom - top)

    body = [
        f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#444"/>'
    ]
    for tick in nice_ticks(x_low, x_high):
        body += [
            f'<line x1="{sx(tick):.1f}" y1="{bottom}" x2="{sx(tick):.1f}" y2="{bottom + 5}" stroke="#444"/>',
            _text(sx(tick), bottom + 18, f"{tick:g}", 11),
        ]
    for tick in nice_ticks(y_low, y_high):
        body += [
            f'<line x1="{left}" y1="{sy(tick):.1f}" x2="{right}" y2="{sy(tick):.1f}" stroke="#ddd"/>',
            _text(left - 8, sy(tick) + 4, f"{tick:g}", 11, "end"),
        ]
    body += [
        _text((left + right) / 2, height - 15, x_label),
        _text(18, (top + bottom) / 2, y_label, rotate=-90),
    ]
    for index, (name, values) in enumerate(series.items()):
        color = PALETTE[index % len(PALETTE)]
        finite = sorted(p for p in values if all(map(math.isfinite, p)))
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in finite)
        body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        body += [
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{color}"/>' for x, y in finite
        ]
        legend_y = top + 10 + 20 * index
        body += [
            f'<line x1="{right + 12}" y1="{legend_y}" x2="{right + 32}" y2="{legend_y}" stroke="{color}" stroke-width="3"/>',
            _text(right + 38, legend_y + 4, name, 11, "start"),
        ]
    return _document(width, height, body, title)


def _color(value: float, low: float, high: float) -> str:
    """White (low) to dark blue (high)."""
    if not math.isfinite(value):
        return "#eeeeee"
    t = 0.0 if high <= low else min(max((value - low) / (high - low), 0.0), 1.0)
    red, green, blue = (int(255 + (end - 255) * t) for end in (8, 48, 107))
    return f"rgb({red},{green},{blue})"


def heatmap(
    values: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    *,
    title: str,
    value_label: str,
    cell_width: float | None = None,
) -> str:
    """Rows x columns of colored cells with a color bar; long column lists get thin cells."""
    rows, columns = len(row_labels), len(column_labels)
    cell_height = 22
    cell_width = cell_width or max(min(700 / max(columns, 1), 40), 2)
    left, top = 130, 40
    width = int(left + columns * cell_width + 110)
    height = int(top + rows * cell_height + 90)
    finite = [v for row in values for v in row if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    body = []
    for r, row in enumerate(values):
        y = top + r * cell_height
        body.append(_text(left - 6, y + cell_height * 0.7, row_labels[r], 11, "end"))
        for c, value in enumerate(row):
            body.append(
                f'<rect x="{left + c * cell_width:.2f}" y="{y}" width="{cell_width + 0.3:.2f}" height="{cell_height}" fill="{_color(value, low, high)}"><title>{escape(row_labels[r])} / {escape(column_labels[c])}: {value:.4f}</title></rect>'
            )
    label_every = max(1, math.ceil(columns * 11 / (columns * cell_width)))
    for c in range(0, columns, label_every):
        x = left + (c + 0.5) * cell_width
        body.append(_text(x, top + rows * cell_height + 10, column_labels[c], 9, "end", rotate=-60))
    bar_x = left + columns * cell_width + 25
    for step in range(50):
        value = high - (high - low) * step / 49
        body.append(
            f'<rect x="{bar_x:.1f}" y="{top + step * 4}" width="14" height="4.5" fill="{_color(value, low, high)}"/>'
        )
    body += [
        _text(bar_x + 18, top + 8, f"{high:.3g}", 10, "start"),
        _text(bar_x + 18, top + 200, f"{low:.3g}", 10, "start"),
        _text(bar_x + 7, top + 218, value_label, 10),
    ]
    return _document(max(width, 420), max(height, top + 240), body, title)


def grouped_bars(
    categories: Sequence[str],
    series: dict[str, Sequence[float]],
    *,
    title: str,
    y_label: str,
    width: int = 720,
    height: int = 380,
) -> str:
    """For each category, one bar per series; y axis from 0."""
    left, right, top, bottom = 70, width - 150, 40, height - 80
    finite = [v for values in series.values() for v in values if math.isfinite(v)]
    y_high = max(finite + [1e-9]) * 1.1
    group_width = (right - left) / max(len(categories), 1)
    bar_width = group_width * 0.8 / max(len(series), 1)

    def sy(y: float) -> float:
        return bottom - y / y_high * (bottom - top)

    body = [f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#444"/>']
    for tick in nice_ticks(0.0, y_high):
        body += [
            f'<line x1="{left}" y1="{sy(tick):.1f}" x2="{right}" y2="{sy(tick):.1f}" stroke="#ddd"/>',
            _text(left - 8, sy(tick) + 4, f"{tick:g}", 11, "end"),
        ]
    for g, category in enumerate(categories):
        x0 = left + g * group_width + group_width * 0.1
        body.append(_text(x0 + group_width * 0.4, bottom + 14, category, 10, "end", rotate=-35))
        for s, (name, values) in enumerate(series.items()):
            value = values[g]
            if math.isfinite(value):
                body.append(
                    f'<rect x="{x0 + s * bar_width:.1f}" y="{sy(value):.1f}" width="{bar_width:.1f}" height="{bottom - sy(value):.1f}" fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(name)} / {escape(category)}: {value:.4f}</title></rect>'
                )
    for s, name in enumerate(series):
        legend_y = top + 10 + 18 * s
        body += [
            f'<rect x="{right + 12}" y="{legend_y - 8}" width="14" height="10" fill="{PALETTE[s % len(PALETTE)]}"/>',
            _text(right + 32, legend_y + 1, name, 11, "start"),
        ]
    body.append(_text(18, (top + bottom) / 2, y_label, rotate=-90))
    return _document(width, height, body, title)

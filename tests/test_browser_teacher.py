"""A teacher's path through the built demo in a real browser (issue 15): the heterogeneity the
paper shows is visible, a merge matters against the base model, and EMR+TADrop is compared
with EMR on the same page. Screenshots of each step go to ``test-artifacts/browser/teacher-*``
(and, with ``TADROP_UPDATE_SCREENSHOTS=1``, to ``docs/screenshots/``)."""

from __future__ import annotations

import statistics

import pytest

from tests.test_browser import (  # noqa: F401  (fixtures used by name)
    browser,
    dashboard_url,
    open_page,
    screenshot,
    wait_for_idle,
)
from tests.test_browser import new_page as open_dashboard

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HEATMAP_VALUES = """() => {
    const plots = [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')];
    for (const plot of plots) {
        const trace = (plot._fullData || []).find(item => item.type === 'heatmap');
        if (trace) {
            const z = Array.from(trace.z, row => Array.from(row));
            return {z: z, zmin: trace.zmin, zmax: trace.zmax};
        }
    }
    return null;
}"""


def first_heatmap(page) -> tuple[list[float], dict]:
    """The finite cell values of the page's first Plotly heatmap (as drawn), and its trace."""
    page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first.wait_for()
    page.wait_for_function(HEATMAP_VALUES)
    trace = page.evaluate(HEATMAP_VALUES)
    values = [value for row in trace["z"] for value in row if isinstance(value, (int, float))]
    return values, trace


def table_rows(page, testid: str = "stTable") -> list[dict[str, str]]:
    """The last streamlit static table on the page as a list of {column: text}."""
    table = page.locator(f'[data-testid="{testid}"]').last
    header = [cell.strip() for cell in table.locator("thead th").all_inner_texts()]
    rows = []
    for row in table.locator("tbody tr").all():
        cells = [cell.strip() for cell in row.locator("th, td").all_inner_texts()]
        rows.append(dict(zip(header[-len(cells) :], cells, strict=True)))
    return rows


def mean_of(rows: list[dict[str, str]], column: str, run: str | None = None) -> float:
    chosen = [row for row in rows if run is None or row["run"] == run]
    return statistics.fmean(float(row[column]) for row in chosen)


def test_a_teachers_path_through_the_demo(browser, dashboard_url):  # noqa: F811
    page = open_dashboard(browser, dashboard_url)
    page.get_by_text("Tensors merged").wait_for()
    wait_for_idle(page)
    screenshot(page, "teacher-1-models")

    # Heterogeneity is visible: drop rates differ across tensors and tasks by a wide margin.
    open_page(page, "Sparsity landscape", "Sparsity landscape")
    rates, trace = first_heatmap(page)
    deciles = statistics.quantiles(rates, n=10)
    assert deciles[-1] - deciles[0] >= 0.3, f"drop rates too flat: p10-p90 {deciles}"
    # The colours are fitted to the data, not 0-1 (a 0-1 toggle is on the page).
    assert trace["zmin"] > 0.0 or trace["zmax"] < 1.0, trace
    screenshot(page, "teacher-2-landscape")

    open_page(page, "Heterogeneity", "Heterogeneity of task vectors")
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
    screenshot(page, "teacher-3-heterogeneity")

    # A merge that matters, and EMR+TADrop next to EMR without the sparsifier.
    open_page(page, "Merge & evaluate", "Merge & evaluate")
    compare = page.get_by_role("checkbox", name="Also run without the sparsifier")
    if not compare.is_checked():
        compare.check()
        wait_for_idle(page)
    page.get_by_role("button", name="Run merge").click()
    page.get_by_text("Runs in this session").wait_for(timeout=600_000)
    wait_for_idle(page)
    rows = table_rows(page)
    runs = sorted({row["run"] for row in rows})
    assert len(runs) == 2 and any("tadrop" in run for run in runs), runs
    with_tadrop = next(run for run in runs if "tadrop" in run)
    without = next(run for run in runs if "tadrop" not in run)
    base, individual = mean_of(rows, "base", with_tadrop), mean_of(rows, "individual", with_tadrop)
    assert individual - base >= 0.03, f"fine-tuning barely helps: {base=} {individual=}"
    for run in (with_tadrop, without):
        assert mean_of(rows, "merged", run) > base, f"{run} does not beat the base model"
    assert mean_of(rows, "merged", with_tadrop) != mean_of(rows, "merged", without)
    screenshot(page, "teacher-4-merge")

"""Where one task's overall sparsity comes from: the top tensors of
``tadrop.stats.tensor_contributions``, each with its share of the parameters beside its share of
the entries dropped."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from tadrop.figures.base import RESULT_COLUMNS, empty_figure

CONTRIBUTION_RANKINGS = {
    "dropped_share": "entries dropped",
    "param_share": "parameters",
}
DROPPED_COLOUR = "#e45756"


def sparsity_contributions(
    contributions: pd.DataFrame, task: str, *, top: int = 15, by: str = "dropped_share"
) -> go.Figure:
    """The ``top`` tensors of one task ranked ``by`` their share of the entries dropped (numel x d
    over the task vector's entries; the bars of all tensors add up to the overall sparsity) or of
    the parameters; both shares drawn side by side. The largest tensor is added when it is not
    among them. Tensors whose tau is mostly (near) zeros are
    marked (``tadrop.stats.contributions``)."""
    if by not in CONTRIBUTION_RANKINGS:
        raise ValueError(f"Rank tensors by one of {', '.join(CONTRIBUTION_RANKINGS)}, not {by!r}.")
    rows = (
        contributions[contributions["task"] == task] if not contributions.empty else contributions
    )
    if rows.empty:
        return empty_figure(f"No tensors for the task {task!r}.")
    shown = rows.nlargest(top, by)
    largest = rows["param_share"].idxmax()  # shown always: it may set the overall sparsity
    added = largest not in shown.index
    if added:
        shown = pd.concat([shown, rows.loc[[largest]]])
    shown = shown.iloc[::-1]  # first at the top of a horizontal bar chart
    labels = [_label(row, added and index == largest) for index, row in shown.iterrows()]
    details = shown[["drop_rate", "zero_frac", "numel"]].to_numpy()
    hover = (
        "%{y}<br>%{x:.2%} of the task vector<br>d = %{customdata[0]:.3f}, "
        "zeros %{customdata[1]:.1%}, %{customdata[2]:,} entries<extra>%{fullData.name}</extra>"
    )
    figure = go.Figure(
        [
            go.Bar(
                y=labels,
                x=shown["param_share"],
                orientation="h",
                name="share of the parameters",
                marker_color=RESULT_COLUMNS["base"],
                customdata=details,
                hovertemplate=hover,
            ),
            go.Bar(
                y=labels,
                x=shown["dropped_share"],
                orientation="h",
                name="share dropped (numel × d / all entries)",
                marker_color=DROPPED_COLOUR,
                customdata=details,
                hovertemplate=hover,
            ),
        ]
    )
    overall = float(rows["dropped_share"].sum())
    figure.update_xaxes(title="share of the task vector's entries", tickformat=".1%")
    figure.update_layout(
        barmode="group",
        height=160 + 34 * len(shown),
        title=f"{task}: the {len(shown) - added} of {len(rows)} tensors with the most "
        f"{CONTRIBUTION_RANKINGS[by]}{' and the largest' if added else ''} "
        f"(overall sparsity {overall:.1%})",
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def _label(row: pd.Series, added: bool) -> str:
    notes = [note for note, on in (("mostly zeros", row["mostly_zero"]), ("largest", added)) if on]
    return f"{row['tensor']} ({', '.join(notes)})" if notes else str(row["tensor"])

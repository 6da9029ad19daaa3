"""The sparsity landscape figures (paper Fig. 5-7) from a statistics table.

Fig. 5: TADrop's drop rate d = Q_a(|tau|) / Q_b(|tau|) per task x tensor (heatmap).
Fig. 6: numel-weighted mean d per layer and task.
Fig. 7: numel-weighted mean d per component kind and task.
"""

from __future__ import annotations

import pandas as pd

from tadrop.report.svg import grouped_bars, heatmap, line_chart


def _weighted_mean(table: pd.DataFrame, by: list[str]) -> pd.Series:
    weighted = (table["drop_rate"] * table["numel"]).groupby([table[key] for key in by]).sum()
    return weighted / table.groupby(by)["numel"].sum()


def landscape_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per task: overall d (numel-weighted) and the spread of d over tensors."""
    overall = _weighted_mean(table, ["task"])
    spread = table.groupby("task")["drop_rate"].describe(percentiles=[0.1, 0.5, 0.9])
    return pd.DataFrame(
        {
            "overall_d": overall,
            "min_d": spread["min"],
            "p10_d": spread["10%"],
            "median_d": spread["50%"],
            "p90_d": spread["90%"],
            "max_d": spread["max"],
            "tensors": spread["count"].astype(int),
        }
    ).reset_index()


def drop_rate_heatmap(table: pd.DataFrame, title: str) -> str:
    tensors = list(dict.fromkeys(table["tensor"]))
    tasks = list(dict.fromkeys(table["task"]))
    matrix = table.pivot(index="task", columns="tensor", values="drop_rate").loc[tasks, tensors]
    short = [name.removesuffix(".weight") for name in tensors]
    return heatmap(matrix.to_numpy().tolist(), tasks, short, title=title, value_label="drop rate d")


def layer_profile(table: pd.DataFrame, title: str) -> str:
    layered = table.dropna(subset=["layer"])
    if layered.empty:
        return line_chart({}, title=title, x_label="layer", y_label="mean drop rate d")
    means = _weighted_mean(layered.assign(layer=layered["layer"].astype(int)), ["task", "layer"])
    series = {
        task: [(float(layer), float(value)) for (t, layer), value in means.items() if t == task]
        for task in dict.fromkeys(table["task"])
    }
    return line_chart(
        series, title=title, x_label="layer (block index)", y_label="mean drop rate d"
    )


def component_bars(table: pd.DataFrame, title: str) -> str:
    means = _weighted_mean(table, ["kind", "task"])
    kinds = list(dict.fromkeys(table["kind"]))
    tasks = list(dict.fromkeys(table["task"]))
    series = {
        task: [float(means.get((kind, task), float("nan"))) for kind in kinds] for task in tasks
    }
    return grouped_bars(kinds, series, title=title, y_label="mean drop rate d")


def component_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rows: component kinds; columns: tasks; values: numel-weighted mean d."""
    return _weighted_mean(table, ["kind", "task"]).unstack("task")

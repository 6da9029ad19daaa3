"""The sparsity landscape tables of the report (paper Figs. 5-7 are drawn by
``tadrop.figures.landscape``, from the same numel-weighted means)."""

from __future__ import annotations

import pandas as pd

from tadrop.figures import weighted_drop_rate


def landscape_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per task: overall d (numel-weighted) and the spread of d over tensors."""
    overall = weighted_drop_rate(table, ["task"])
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


def component_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rows: component kinds; columns: tasks; values: numel-weighted mean d."""
    return weighted_drop_rate(table, ["kind", "task"]).unstack("task")

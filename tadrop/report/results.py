"""What one zoo's report holds: the measured rows, tables and figures (data only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tadrop.report.experiments import Row


@dataclass
class ZooReport:
    zoo: str
    size: str
    description: dict[str, Any]
    main_rows: list[Row]
    selections: dict[str, dict[float, float]]
    ablation: list[Row]
    grid: list[Row]
    sweep: dict[str, list[Row]]
    landscape: pd.DataFrame
    components: pd.DataFrame
    figures: dict[str, Any] = field(default_factory=dict)  # file name -> plotly Figure
    seconds: dict[str, float] = field(default_factory=dict)

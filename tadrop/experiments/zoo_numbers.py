"""What a demo build records about itself: heterogeneity of d and how much merging matters.

Passed to ``tadrop.zoo.build_zoo(measure=...)`` and ``build_synthetic(measure=...)`` by the
command line, the dashboard and the report, so that the zoo package (a lower layer) runs no
statistics or merges itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tadrop.experiments.heterogeneity import family_heterogeneity
from tadrop.experiments.merge_contrast import merge_contrast
from tadrop.task_vectors import load_family
from tadrop.zoo.load import Zoo


def family_numbers(base_dir: Path, task_dirs: dict[str, Path]) -> dict[str, Any]:
    """The heterogeneity of d over a family's tensors (no labelled data needed)."""
    return {"heterogeneity": family_heterogeneity(load_family(base_dir, task_dirs))}


def zoo_numbers(zoo: Zoo) -> dict[str, Any]:
    """Heterogeneity of d and the merge contrast (base, individual, TA, TIES, EMR) of a zoo."""
    return {**family_numbers(zoo.base_dir, dict(zoo.task_dirs)), "merges": merge_contrast(zoo)}

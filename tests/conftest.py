"""Shared fixtures: the quick text zoo, built once per test session."""

from __future__ import annotations

import os

# Fresh multi-megabyte allocations are slow on small VMs (see docs PERF-NOTES); transparent
# huge pages make fine-tuning several times faster. torch reads this once, at import.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import pytest  # noqa: E402
from eval_fixtures import tiny_families  # noqa: E402, F401 (the evaluation tests' families)


@pytest.fixture(scope="session")
def quick_text_zoo(tmp_path_factory: pytest.TempPathFactory):
    """The quick text zoo: reused from $TADROP_HOME when built there, else built in a temp home."""
    from tadrop.experiments.zoo_numbers import zoo_numbers
    from tadrop.zoo import build_zoo, is_built, load_zoo

    if os.environ.get("TADROP_HOME") and is_built("text", "quick"):
        return load_zoo("text", "quick")
    home = tmp_path_factory.mktemp("tadrop_home")
    build_zoo("text", "quick", home=home, measure=zoo_numbers)
    return load_zoo("text", "quick", home=home)

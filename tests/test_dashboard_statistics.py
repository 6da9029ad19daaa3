"""The statistics progress bar the pages draw: tensors done and a time estimate, from the
server's background statistics job (``dashboard.jobs``)."""

from types import SimpleNamespace

import pytest

from dashboard import widgets
from dashboard.jobs import StatisticsJob


def fake_family(sizes):
    return SimpleNamespace(
        tensor_names=list(sizes), numel=sizes.__getitem__, total_params=sum(sizes.values())
    )


def test_progress_counts_tensors_and_weights_the_estimate_by_entries():
    clock = iter([100.0, 104.0, 110.0])  # start, after the big tensor, after the small one
    job = StatisticsJob(fake_family({"big": 750, "small": 250}), "cpu", clock=lambda: next(clock))
    job.record(1, 2, "big")  # 3/4 of the entries in 4 s: about 1.3 s left
    first_fraction, first_text = widgets.progress_display(job.progress())
    job.record(2, 2, "small")
    last_fraction, last_text = widgets.progress_display(job.progress())
    assert first_fraction == 0.75 and first_text.startswith("Statistics: 1/2 tensors, about 1 s")
    assert last_fraction == 1.0 and last_text == "Statistics: 2/2 tensors (small)"


def test_a_cached_table_fills_the_bar_at_once():
    job = StatisticsJob(fake_family({"a": 10, "b": 10}), "cpu")
    job.record(2, 2, "statistics read from the cache")
    assert widgets.progress_display(job.progress()) == (
        1.0,
        "Statistics: 2/2 tensors (statistics read from the cache)",
    )


def test_before_the_first_tensor_the_bar_is_empty_without_an_estimate():
    job = StatisticsJob(fake_family({"a": 10}), "cpu")
    assert widgets.progress_display(job.progress()) == (0.0, "Statistics: 0/1 tensors")


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.2, "1 s"), (42, "42 s"), (600, "10 min"), (5400, "1.5 h")]
)
def test_durations_read_naturally(seconds, text):
    assert widgets.format_duration(seconds) == text

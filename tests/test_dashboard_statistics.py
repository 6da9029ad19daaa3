"""The statistics progress bar the pages draw: tensors done and a time estimate."""

from types import SimpleNamespace

import pytest

from dashboard import widgets


class FakeBar:
    def __init__(self):
        self.shown = []

    def progress(self, fraction, text):
        self.shown.append((fraction, text))


def fake_family(sizes):
    return SimpleNamespace(
        tensor_names=list(sizes), numel=sizes.__getitem__, total_params=sum(sizes.values())
    )


def test_progress_counts_tensors_and_weights_the_estimate_by_entries(monkeypatch):
    clock = iter([100.0, 104.0, 110.0])  # start, after the big tensor, after the small one
    monkeypatch.setattr(widgets.time, "monotonic", lambda: next(clock))
    bar = FakeBar()
    progress = widgets.statistics_progress(bar, fake_family({"big": 750, "small": 250}))
    progress(1, 2, "big")  # 3/4 of the entries in 4 s: about 1.3 s left
    progress(2, 2, "small")
    (first_fraction, first_text), (last_fraction, last_text) = bar.shown
    assert first_fraction == 0.75 and first_text.startswith("Statistics: 1/2 tensors, about 1 s")
    assert last_fraction == 1.0 and last_text == "Statistics: 2/2 tensors (small)"


def test_the_bar_is_redrawn_at_most_once_per_interval_and_always_at_the_end(monkeypatch):
    # start, then tensors done at 0.1 s, 0.3 s, 0.7 s, 0.8 s and the last one at 0.9 s
    clock = iter([100.0, 100.1, 100.3, 100.7, 100.8, 100.9])
    monkeypatch.setattr(widgets.time, "monotonic", lambda: next(clock))
    bar = FakeBar()
    sizes = {name: 10 for name in "abcde"}
    progress = widgets.statistics_progress(bar, fake_family(sizes), interval_s=0.5)
    for done, name in enumerate(sizes, start=1):
        progress(done, len(sizes), name)
    assert [text.split(",")[0] for _, text in bar.shown] == [
        "Statistics: 3/5 tensors",  # the first 0.5 s after the start
        "Statistics: 5/5 tensors (e)",  # the last tensor, 0.2 s later
    ]


def test_a_cached_table_fills_the_bar_at_once():
    bar = FakeBar()
    progress = widgets.statistics_progress(bar, fake_family({"a": 10, "b": 10}))
    progress(2, 2, "statistics read from the cache")
    assert bar.shown == [(1.0, "Statistics: 2/2 tensors (statistics read from the cache)")]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.2, "1 s"), (42, "42 s"), (600, "10 min"), (5400, "1.5 h")]
)
def test_durations_read_naturally(seconds, text):
    assert widgets.format_duration(seconds) == text

"""``keep_scratch_memory``: freed scratch blocks are reused without page faults while a
statistics table is computed, also on a thread that is not the main one (the dashboard's
statistics job). Page faults are counted, not timed. The settings last for the process, so
the test through ``compute_stats`` comes first."""

from __future__ import annotations

import resource
import sys
import threading

import numpy as np
import pytest

from tadrop.quantiles import memory
from tadrop.stats import table

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or memory._glibc() is None, reason="glibc only"
)

BLOCK = 4 << 20  # one row's scratch: e.g. a (1000 rows, 512 bins) int64 cumulative sum
LIVE = 4  # blocks alive at once
ROUNDS = 20  # tensors
PAGES = LIVE * BLOCK // 4096  # faulted once, the first time


def scratch_rounds() -> int:
    """Minor page faults of this thread while it allocates, fills and frees LIVE blocks of
    BLOCK bytes, ROUNDS times (as each row of the statistics does)."""
    start = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(ROUNDS):
        blocks = [np.ones(BLOCK // 8, dtype=np.int64) for _ in range(LIVE)]
        del blocks
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - start


def in_a_new_thread(work):
    result = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join()
    return result[0]


def test_compute_stats_keeps_its_scratch_memory(monkeypatch):
    monkeypatch.setattr(table, "_compute_table", lambda *args: scratch_rounds())
    family = type("Family", (), {"tensor_names": []})()
    faults = in_a_new_thread(lambda: table.compute_stats(family, cache=False))
    assert faults < 3 * PAGES, f"{faults} page faults: blocks were faulted in anew each round"


def test_freed_scratch_is_reused_without_faulting_its_pages_again():
    def work():
        with memory.keep_scratch_memory():
            return scratch_rounds()

    faults = in_a_new_thread(work)
    assert faults < 3 * PAGES, f"{faults} page faults: blocks were faulted in anew each round"

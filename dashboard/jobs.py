"""Statistics computed in the background, once per family and device for the whole server.

``tadrop dashboard --family`` starts the family's job as the server starts (``serve.py``),
before any browser connects; a page that needs the table joins the running job (or starts
one) and draws its progress, so a reload, a second tab or a second page never computes the
table again. No streamlit here: the job runs in a plain thread and pages poll ``progress``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from tadrop import stats as tadrop_stats
from tadrop.task_vectors import ModelFamily

DEFAULT_DEVICE = "auto"  # the pages' device until a session picks another
MAX_JOBS = 4  # finished jobs kept (their tables), as the statistics caches' max_entries


@dataclass(frozen=True)
class JobProgress:
    """Where a job stands: tensors done of ``total``, the last one's name, the fraction of
    the entries read and the seconds left (estimated from the entries, None before any)."""

    done: int
    total: int
    name: str
    fraction: float
    seconds_left: float | None


class StatisticsJob:
    """``compute_stats`` of one family (with the on-disk cache) in a daemon thread."""

    def __init__(self, family: ModelFamily, device: str, clock=time.monotonic) -> None:
        self.family, self.device, self._clock = family, device, clock
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._state = {"done": 0, "total": len(family.tensor_names), "name": "", "entries": 0}
        self.started = clock()
        self.table: pd.DataFrame | None = None
        self.error: BaseException | None = None

    def start(self) -> StatisticsJob:
        threading.Thread(target=self._run, name="tadrop-statistics", daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            self.table = tadrop_stats.compute_stats(
                self.family, device=self.device, progress=self.record
            )
        except Exception as error:  # noqa: BLE001 - shown by the page that waits on it
            self.error = error
        finally:
            self._finished.set()

    def record(self, done: int, total: int, name: str) -> None:
        """The ``progress`` callback of ``compute_stats`` (called in the job's thread)."""
        with self._lock:
            if name in self.family.tensor_names:
                self._state["entries"] += self.family.numel(name)
            self._state.update(done=done, total=total, name=name)

    def progress(self) -> JobProgress:
        """Tensors done and the time left, estimated from the entries read so far (tensors
        differ in size by orders of magnitude)."""
        with self._lock:
            done, total = self._state["done"], self._state["total"]
            name, entries = self._state["name"], self._state["entries"]
        finished = total > 0 and done >= total
        fraction = 1.0 if finished else min(entries / max(self.family.total_params, 1), 1.0)
        left = None
        if 0 < fraction < 1:
            left = (self._clock() - self.started) * (1 - fraction) / fraction
        return JobProgress(done, total, name, fraction, left)

    def wait(self, timeout_s: float) -> bool:
        """Whether the job has finished (waits up to ``timeout_s``)."""
        return self._finished.wait(timeout_s)


_jobs: dict[tuple[str, str], StatisticsJob] = {}
_jobs_lock = threading.Lock()


def statistics_job(
    source_key: str, device: str, open_family: Callable[[], ModelFamily]
) -> StatisticsJob:
    """The job of this family and device: the running or finished one, else a new one
    (started). A failed job is replaced: a later visit tries again."""
    key = (source_key, device)
    with _jobs_lock:
        job = _jobs.get(key)
        if job is None or job.error is not None:
            finished = [k for k, v in _jobs.items() if k != key and v.wait(0)]
            for old_key in finished[: max(len(_jobs) + 1 - MAX_JOBS, 0)]:
                del _jobs[old_key]  # the oldest finished ones (dicts keep insertion order)
            job = _jobs[key] = StatisticsJob(open_family(), device).start()
        return job

"""The server's statistics jobs: one per family and device, started by ``serve.py`` for the
command-line family before any browser connects, joined by every page and session."""

from __future__ import annotations

import runpy
import threading
from pathlib import Path

import pytest
from family_fixtures import write_family
from streamlit.testing.v1 import AppTest
from test_dashboard_app import messages

from dashboard import jobs
from tadrop import stats as tadrop_stats
from tadrop.config.family import ENV_FAMILY
from tadrop.sparsify.tadrop_drop import DEFAULT_A, DEFAULT_B, DEFAULT_EPS
from tadrop.stats.cache import is_cached

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"


@pytest.fixture
def family_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TADROP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TADROP_DATA_ROOT", str(tmp_path))
    write_family(tmp_path / "fam", tasks=2)
    return tmp_path / "fam"


@pytest.fixture
def counted_compute(monkeypatch):
    """compute_stats counting its calls, held until ``release`` is set."""
    calls, release = [], threading.Event()
    real = tadrop_stats.compute_stats

    def compute(family, **options):
        calls.append(family)
        release.wait(30)
        return real(family, **options)

    monkeypatch.setattr(jobs.tadrop_stats, "compute_stats", compute)
    return calls, release


def start_statistics(argv, environ):
    serve = runpy.run_path(str(DASHBOARD / "serve.py"), run_name="serve")
    return serve["start_statistics"](argv, environ)


def test_serve_starts_the_command_line_familys_statistics_before_a_browser(family_dir):
    job = start_statistics(["run", "app.py", "--", "--family", str(family_dir)], {})
    assert job is not None and job.wait(60) and job.error is None
    assert set(job.table["task"]) == {"task0", "task1"}
    assert is_cached(job.family, DEFAULT_A, DEFAULT_B, DEFAULT_EPS)  # reopening reads nothing


def test_no_family_on_the_command_line_starts_nothing():
    assert start_statistics(["run", "app.py"], {}) is None


def test_a_running_job_is_joined_and_a_failed_one_retried(family_dir, counted_compute):
    calls, release = counted_compute
    environ = {ENV_FAMILY: str(family_dir)}
    first = start_statistics(["run", "app.py"], environ)
    assert start_statistics(["run", "app.py"], environ) is first
    release.set()
    assert first.wait(60) and len(calls) == 1
    first.error = ValueError("a NaN in task0")  # as if it had failed
    again = start_statistics(["run", "app.py"], environ)
    assert again is not first and again.wait(60) and again.error is None and len(calls) == 2


def test_the_page_draws_the_job_the_server_started_without_computing_again(
    family_dir, counted_compute, monkeypatch
):
    calls, release = counted_compute
    monkeypatch.setenv(ENV_FAMILY, str(family_dir))
    job = start_statistics(["run", "app.py"], {ENV_FAMILY: str(family_dir)})
    threading.Timer(1.0, release.set).start()  # the job finishes while the page waits on it
    app = AppTest.from_file(str(DASHBOARD / "app.py"), default_timeout=60)
    app.session_state["demo_build_tried"] = True
    app.run()
    app.switch_page("views/landscape.py").run()
    assert not app.exception and not messages(app, "error")
    assert job.wait(0) and len(calls) == 1
    assert app.get("plotly_chart")

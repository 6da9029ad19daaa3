"""`tadrop dashboard` stopped by a signal or killed: the streamlit server it started stops too
(issue 15 bug 4). No zoo is needed: the server answers its health check before any session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def _servers_on(port: int) -> list[int]:
    """Process ids whose command line runs streamlit (or dashboard/serve.py) on this port."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        server = b"streamlit" in arguments or any(a.endswith(b"serve.py") for a in arguments)
        if server and str(port).encode() in arguments:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL])
def test_the_streamlit_server_stops_with_tadrop_dashboard(tmp_path, signum):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TADROP_HOME": str(tmp_path / "home")}
    parent = subprocess.Popen(
        [sys.executable, "-m", "tadrop.cli", "dashboard", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not _answers(port):
            if parent.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the dashboard never answered (exit {parent.poll()})")
            time.sleep(0.2)
        assert _servers_on(port)
        parent.send_signal(signum)  # only the parent, as `kill PID` does
        parent.wait(timeout=30)
        deadline = time.monotonic() + 15
        while (_answers(port) or _servers_on(port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _answers(port)
        assert _servers_on(port) == []
        if signum != signal.SIGKILL:
            assert parent.returncode == 128 + signum
    finally:
        parent.kill()
        for pid in _servers_on(port):
            os.kill(pid, signal.SIGKILL)

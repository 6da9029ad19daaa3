"""Fresh-process measurements shared by the benchmarks: wall time, peak RSS, JSON output."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Measured:
    wall_s: float
    peak_rss_bytes: int
    exit_code: int
    stdout: str
    stderr: str


def run_measured(
    command: list[str], *, env: dict[str, str] | None = None, timeout_s: float = 1800
) -> Measured:
    """Run ``command`` as a fresh process; its wall time and peak RSS (its waited children too)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=REPO_ROOT)
        killer = threading.Timer(timeout_s, process.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Measured(wall, usage.ru_maxrss * 1024, process.returncode, out.read(), err.read())


def child_env(source_root: Path, **extra: str) -> dict[str, str]:
    """The environment of a child that imports the tadrop package under ``source_root``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source_root), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def warm_page_cache(folders: list[Path]) -> int:
    """Read every file once so that the timed runs all start from a warm page cache."""
    buffer, total = bytearray(16 * 2**20), 0
    for folder in folders:
        for path in sorted(folder.iterdir()):
            with open(path, "rb", buffering=0) as stream:
                while count := stream.readinto(buffer):
                    total += count
    return total


def last_json(text: str) -> dict:
    """The last line of ``text`` that parses as a JSON object ({} if none)."""
    import json

    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def machine_line() -> str:
    """CPU model, cores and torch version (and the GPU when one is used)."""
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu} x{os.cpu_count()}{gpu}, torch {torch.__version__}"

"""Run a command and say what its peak resident memory was made of.

Polls ``/proc/PID/status`` of the child every 0.1 s: peak VmRSS, and RssAnon (memory the process
allocated) against RssFile (file pages mapped into it, e.g. memory-mapped input checkpoints,
which the kernel can drop) at that peak; the load average before and after, since other jobs
share the machine. Linux only. Prints one JSON line.

    python3 bench/rss_breakdown.py -- python3 -m tadrop.cli merge run.yaml -o OUT --overwrite
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

FIELDS = ("VmRSS", "RssAnon", "RssFile")


def read_status(pid: int) -> dict[str, int] | None:
    """The FIELDS of a live process, in MiB (None once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = {key: re.search(rf"{key}:\s+(\d+) kB", text) for key in FIELDS}
    if not all(found.values()):
        return None  # a zombie has no memory lines
    return {key: int(match.group(1)) // 1024 for key, match in found.items()}


def measure(command: list[str], interval: float = 0.1) -> dict[str, object]:
    load_before = os.getloadavg()
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    at_peak: dict[str, int] = dict.fromkeys(FIELDS, 0)
    while child.poll() is None:
        status = read_status(child.pid)
        if status and status["VmRSS"] > at_peak["VmRSS"]:
            at_peak = status
        time.sleep(interval)
    return {
        "command": " ".join(command),
        "exit_code": child.returncode,
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_mib": at_peak,  # VmRSS at its peak, and what made it up then
        "load_before": [round(value, 2) for value in load_before],
        "load_after": [round(value, 2) for value in os.getloadavg()],
    }


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1 :] if "--" in argv else argv
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    result = measure(command)
    print(json.dumps(result))
    return int(result["exit_code"] != 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

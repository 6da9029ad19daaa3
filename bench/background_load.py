"""A fixed background load that a benchmark starts itself, so every headline is measured twice.

Machines here are shared: a number measured only on a quiet machine is not a result. Each
benchmark therefore runs its measurements once with nothing else running ("idle") and once
while this module keeps every core busy ("loaded"), and reports both, with the ratios taken
inside each condition.

Kinds of load (one process per core by default):

- ``spin``: a pure-Python busy loop. Takes a core's cycles, touches almost no memory: what a
  CPU-bound job of another user does to our threads' scheduling.
- ``memory``: numpy copies between two 64 MiB arrays in a loop. Takes a core and memory
  bandwidth: what a data-loading or merging job of another user does.

    with BackgroundLoad("spin"):
        measure()
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

LOAD_SCRIPTS = {
    "spin": "while True:\n    pass\n",
    "memory": (
        "import numpy as np\n"
        "a = np.ones(1 << 24, dtype=np.float32); b = np.empty_like(a)\n"
        "while True:\n    np.copyto(b, a); np.copyto(a, b)\n"
    ),
}
CONDITIONS = ("idle", "loaded")


class BackgroundLoad:
    """``processes`` busy processes (default: one per core) while the ``with`` block runs."""

    def __init__(self, kind: str = "spin", processes: int | None = None) -> None:
        if kind not in LOAD_SCRIPTS:
            raise ValueError(f"unknown load kind {kind!r}; use one of {sorted(LOAD_SCRIPTS)}")
        self.kind = kind
        self.processes = processes or len(os.sched_getaffinity(0))
        self._children: list[subprocess.Popen] = []

    def __enter__(self) -> BackgroundLoad:
        # One thread each: the load is exactly `processes` runnable threads.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        for _ in range(self.processes):
            self._children.append(
                subprocess.Popen(
                    [sys.executable, "-c", LOAD_SCRIPTS[self.kind]],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(0.5)  # let them start (and the memory load allocate) before measuring
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self._children:
            child.terminate()
        for child in self._children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._children.clear()

    def describe(self) -> str:
        return f"{self.processes} x {self.kind} process(es)"


@contextmanager
def condition(name: str, kind: str = "spin") -> Iterator[str]:
    """``idle``: nothing started; ``loaded``: a BackgroundLoad of ``kind`` for the block."""
    if name == "idle":
        yield "idle (nothing started by the benchmark)"
    elif name == "loaded":
        with BackgroundLoad(kind) as load:
            yield f"loaded ({load.describe()})"
    else:
        raise ValueError(f"unknown condition {name!r}; use one of {CONDITIONS}")


def parse_conditions(text: str) -> list[str]:
    """``idle,loaded`` -> ['idle', 'loaded'] with unknown names refused."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONDITIONS]
    if unknown or not names:
        raise SystemExit(f"--load: use a comma-separated subset of {','.join(CONDITIONS)}")
    return names

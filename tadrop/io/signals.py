"""SIGTERM and SIGHUP handled like Ctrl-C, so every writer's cleanup runs and nothing is left.

`timeout`, `kill`, job schedulers and a closed terminal stop a process with SIGTERM or SIGHUP,
whose default action ends Python at once: no `finally`, no `except`, so staging folders and
`*.partial` shards stay behind. With the handlers installed the signal raises `Terminated` (a
KeyboardInterrupt) in the main thread instead; the writers remove their temporary files as for
Ctrl-C, and the program exits with the shell's code for that signal, 128 + its number.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_SIGINT = 128 + signal.SIGINT  # 130
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # exit codes 143 and 129


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; `exit_code` is the one a shell reports for it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"received {signal.Signals(signum).name}")


def _raise_terminated(signum: int, frame: object) -> None:
    for handled in HANDLED_SIGNALS:  # a second signal must not interrupt the cleanup
        signal.signal(handled, signal.SIG_IGN)
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """From now on SIGTERM and SIGHUP raise `Terminated` in the main thread (call it there)."""
    if threading.current_thread() is threading.main_thread():
        for handled in HANDLED_SIGNALS:
            signal.signal(handled, _raise_terminated)


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """`install_signal_handlers` for the duration of a block; the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {handled: signal.getsignal(handled) for handled in HANDLED_SIGNALS}
    install_signal_handlers()
    try:
        yield
    finally:
        for handled, handler in previous.items():
            signal.signal(handled, handler)


def interrupt_exit_code(interrupt: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return getattr(interrupt, "exit_code", EXIT_SIGINT)

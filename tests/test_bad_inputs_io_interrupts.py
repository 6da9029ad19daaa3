"""Catalogue: a write of a multi-shard checkpoint stopped by a signal, in a real subprocess.

SIGINT, SIGTERM and SIGHUP: the exit code a shell expects (130, 143, 129), the old output intact
and nothing left behind. SIGKILL cannot be caught: its leftovers are removed by the next write
to the same place when provably stale, and named (kept) otherwise.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from io_fixtures import snapshot

from tadrop.io import open_checkpoint, write_checkpoint
from tadrop.io.signals import Terminated, interrupt_exit_code, signals_as_interrupts
from tadrop.io.stale import OWNER_FILE, LeftoverWarning, clean_leftovers, owner_record

# What the CLI does: handlers installed once, the interrupt's exit code returned.
WRITER = """
import sys, time, torch
from tadrop.io import write_checkpoint
from tadrop.io.signals import install_signal_handlers, interrupt_exit_code

install_signal_handlers()

def tensors():
    for i in range(100_000):
        yield f"layers.{i}.weight", torch.full((256,), float(i))
        time.sleep(0.002)

try:
    write_checkpoint(tensors(), sys.argv[1], max_shard_bytes=4096, overwrite=True)
except KeyboardInterrupt as interrupt:
    sys.exit(interrupt_exit_code(interrupt))
"""


def start_writer(tmp_path: Path, out: Path) -> subprocess.Popen:
    """Start the writer; return once it has written a few shards into its staging folder."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    process = subprocess.Popen([sys.executable, str(script), str(out)])
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.tadrop-tmp-*/shard-3.partial")):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the writer did not start writing shards (exit code {process.poll()})")
        time.sleep(0.05)
    return process


def entries_beside(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name not in {"writer.py", "out"})


@pytest.fixture
def old_output(tmp_path):
    out = write_checkpoint([("old", torch.ones(3))], tmp_path / "out")
    return out, snapshot(out)


@pytest.mark.parametrize(
    ("signum", "exit_code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_signal_during_a_sharded_write_exits_with_its_code_and_leaves_nothing(
    tmp_path, old_output, signum, exit_code
):
    out, before = old_output
    process = start_writer(tmp_path, out)
    process.send_signal(signum)
    assert process.wait(timeout=60) == exit_code
    assert snapshot(out) == before  # the old output is intact
    assert entries_beside(out) == []  # no .tadrop-tmp-*, no *.partial


def test_sigkill_leftovers_are_removed_by_the_next_write(tmp_path, old_output):
    out, before = old_output
    process = start_writer(tmp_path, out)
    process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL
    (leftover,) = [name for name in entries_beside(out) if ".tadrop-tmp-" in name]
    assert list((tmp_path / leftover).glob("*.partial"))
    assert snapshot(out) == before
    with warnings.catch_warnings():
        warnings.simplefilter("error", LeftoverWarning)  # ours and stale: removed, no warning
        write_checkpoint([("new", torch.zeros(2))], out, overwrite=True)
    assert entries_beside(out) == []
    assert open_checkpoint(out).keys() == ["new"]


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def fake_leftover(tmp_path: Path, tag: str, record: dict | None) -> Path:
    folder = tmp_path / f".out.{tag}-{record['pid'] if record else 1}-cafe0000"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"half")
    if record is not None:
        (folder / OWNER_FILE).write_text(json.dumps(record))
    return folder


@pytest.mark.parametrize(
    ("case", "record"),
    [
        ("a process that still runs", lambda: owner_record()),
        ("another host", lambda: {**owner_record(dead_pid()), "host": "elsewhere"}),
        ("no owner record", lambda: None),
    ],
    ids=["alive", "other host", "unknown"],
)
def test_leftovers_not_provably_stale_are_named_and_kept(tmp_path, case, record):
    leftover = fake_leftover(tmp_path, "tadrop-tmp", record())
    with pytest.warns(LeftoverWarning, match=str(leftover)) as caught:
        write_checkpoint([("w", torch.ones(1))], tmp_path / "out")
    assert "If no tadrop run is writing there now, delete it" in str(caught[0].message)
    assert leftover.is_dir()


def test_trash_of_a_killed_overwrite_is_put_back_when_the_output_is_missing(tmp_path):
    trash = fake_leftover(tmp_path, "tadrop-old", owner_record(dead_pid()))
    clean_leftovers(tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == b"half"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert not trash.exists()


def test_terminated_is_a_keyboard_interrupt_carrying_the_exit_code():
    assert isinstance(Terminated(signal.SIGTERM), KeyboardInterrupt)
    assert interrupt_exit_code(Terminated(signal.SIGHUP)) == 129
    assert interrupt_exit_code(KeyboardInterrupt()) == 130


def test_handlers_are_restored_after_the_block():
    previous = signal.getsignal(signal.SIGTERM)
    with signals_as_interrupts():
        assert signal.getsignal(signal.SIGTERM) is not previous
    assert signal.getsignal(signal.SIGTERM) is previous

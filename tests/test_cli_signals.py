"""`tadrop merge` stopped by SIGTERM or SIGHUP: the shell's exit code and nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tadrop.io import write_checkpoint

REPO_ROOT = Path(__file__).resolve().parent.parent


def _family(root: Path) -> dict[str, Path]:
    """A base and two fine-tuned models of 64 tensors x 64K entries (16 MB each)."""
    generator = torch.Generator().manual_seed(0)
    base = {f"layers.{i}.weight": torch.randn(256, 256, generator=generator) for i in range(64)}
    paths = {"base": write_checkpoint(base.items(), root / "base")}
    for task in ("a", "b"):
        tuned = {
            name: t + 0.01 * torch.randn(t.shape, generator=generator) for name, t in base.items()
        }
        paths[task] = write_checkpoint(tuned.items(), root / task)
    return paths


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signalled_merge_exits_with_the_shells_code_and_leaves_no_temporary_files(
    tmp_path, signum, exit_code
):
    paths = _family(tmp_path / "models")
    out = tmp_path / "out" / "merged"
    config = tmp_path / "merge.yaml"
    config.write_text(
        f"base: {paths['base']}\nmodels: {{a: {paths['a']}, b: {paths['b']}}}\n"
        "method: ties\nsparsifier: tadrop\n"
        f"output: {{path: {out}, max_shard_size: 300KB}}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tadrop.cli", "merge", str(config)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(out.parent.glob(".*tadrop-tmp*/*")):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the merge never started writing (exit {process.poll()})")
        time.sleep(0.01)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr
    assert "interrupted" in stderr
    assert list(out.parent.iterdir()) == []  # no output, no staging folder, no partial shard

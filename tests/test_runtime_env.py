"""Process-wide settings tadrop makes before torch starts (see tadrop/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys


def _env_after_import(extra: dict[str, str]) -> dict[str, str]:
    code = (
        "import tadrop, torch, os, json; "
        "print(json.dumps({k: os.environ.get(k) for k in "
        "('OMP_WAIT_POLICY', 'THP_MEM_ALLOC_ENABLE')}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY",)}
    env.update(extra)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import json

    return json.loads(out.stdout)


def test_openmp_threads_sleep_instead_of_spinning_by_default():
    assert _env_after_import({})["OMP_WAIT_POLICY"] == "PASSIVE"


def test_a_wait_policy_the_user_set_is_kept():
    assert _env_after_import({"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"

"""``tadrop merge --dry-run`` says what the real run will do (issue 15 bugs 6 and 8): the same
refusals, a memory estimate close to the measured peak, and on a fresh install the demo zoo
that the run would build first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tadrop.cli import main
from tadrop.io import write_checkpoint
from tests.family_fixtures import write_family

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIGS = sorted(
    path for path in (REPO_ROOT / "sample_configs").glob("*.yaml") if "\ndemo:" in path.read_text()
)


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines else {}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    write_family(tmp_path / "models", tasks=2)
    (tmp_path / "run.yaml").write_text(
        "base: models/base\nmodels: [models/task0, models/task1]\nmethod: ties\n"
        "output: {path: merged}\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_dry_run_refuses_an_existing_output_like_the_real_run(workdir, capsys):
    (workdir / "merged").mkdir()
    dry_code = main(["merge", "run.yaml", "--dry-run"])
    dry_error = capsys.readouterr().err
    real_code = main(["merge", "run.yaml"])
    real_error = capsys.readouterr().err
    assert dry_code == real_code == 2
    assert "already exists; pass --overwrite" in dry_error
    assert dry_error == real_error
    assert main(["merge", "run.yaml", "--dry-run", "--overwrite"]) == 0


def test_dry_run_memory_line_names_what_is_held(workdir, capsys):
    assert main(["merge", "run.yaml", "--dry-run"]) == 0
    memory_line = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("memory:")
    )
    assert "result 0 B" not in memory_line
    assert "Python and torch" in memory_line and "walk" in memory_line


def _big_family(root: Path, tasks: int = 4) -> dict[str, Path]:
    """One 8M-entry tensor (32 MB in float32) dominates, as a word embedding does."""
    generator = torch.Generator().manual_seed(0)
    base = {"embed.weight": torch.randn(4096, 2048, generator=generator)}
    base |= {f"layers.{i}.weight": torch.randn(512, 512, generator=generator) for i in range(8)}
    paths = {"base": write_checkpoint(base.items(), root / "base")}
    for index in range(tasks):
        tuned = ((n, t + 0.01 * torch.randn(t.shape, generator=generator)) for n, t in base.items())
        paths[f"task{index}"] = write_checkpoint(tuned, root / f"task{index}")
    return paths


@pytest.fixture(scope="module")
def big_family(tmp_path_factory) -> dict[str, Path]:
    return _big_family(tmp_path_factory.mktemp("big"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
@pytest.mark.parametrize(
    ("method", "sparsifier"), [("ties", "tadrop"), ("task_arithmetic", None), ("emr", "tadrop")]
)
def test_memory_estimate_is_within_a_factor_of_the_measured_peak(
    big_family, tmp_path, method, sparsifier
):
    """Peak RSS of a real `tadrop merge` subprocess against the dry run's estimate. The child
    reports its own VmHWM: wait4's ru_maxrss is inherited at fork, so under pytest (hundreds of
    MB by then) it would read pytest's size, not the merge's."""
    models = ", ".join(f"{name}: {path}" for name, path in big_family.items() if name != "base")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"base: {big_family['base']}\nmodels: {{{models}}}\nmethod: {method}\n"
        + (f"sparsifier: {sparsifier}\n" if sparsifier else "")
        + f"output: {{path: {tmp_path / 'out'}}}\n"
    )
    command = [sys.executable, "-m", "tadrop.cli", "merge", str(config)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    dry = subprocess.run([*command, "--dry-run", "--json"], capture_output=True, text=True, env=env)
    estimate = json.loads(dry.stdout)["memory"]["peak_ram_bytes"]
    report_peak = (
        "import sys; from tadrop.cli import main; from tests.io_fixtures import peak_rss_kib; "
        "code = main(sys.argv[1:]); print(peak_rss_kib()); sys.exit(code)"
    )
    real = subprocess.run(
        [sys.executable, "-c", report_peak, *command[3:], "-q"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    assert real.returncode == 0, real.stderr
    measured = int(real.stdout.split()[-1]) * 1024
    assert 0.7 <= estimate / measured <= 1.5, (estimate / 2**20, measured / 2**20)


@pytest.mark.parametrize("config", DEMO_CONFIGS, ids=lambda path: path.stem)
def test_dry_run_of_a_demo_config_on_a_fresh_install(config, tmp_path, monkeypatch, capsys):
    """No zoo yet: the dry run says it will be built first and how long that takes, exit 0."""
    home = tmp_path / "home"
    monkeypatch.setenv("TADROP_HOME", str(home))
    code, payload = run_json(["merge", str(config), "--dry-run"], capsys)
    assert code == 0
    assert payload["dry_run"] is True
    assert payload["zoo_build"]["expected_seconds"] > 0
    assert payload["tasks"]
    assert not home.exists()  # a dry run builds nothing and writes nothing
    assert main(["merge", str(config), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "will be built first" in text and "tadrop demo build" in text


def test_zoo_not_built_message_names_the_readme_command(tmp_path):
    from tadrop.zoo import ZooError, load_zoo

    with pytest.raises(ZooError, match="tadrop demo build --zoo text --size quick"):
        load_zoo("text", "quick", home=tmp_path)

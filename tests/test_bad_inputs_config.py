"""Catalogue of bad configs and parameters (issue 10): each case is a config (and, where the
case needs one, an odd model family) run through ``tadrop merge``; the table says which message
fragment the user sees and which exit code the command returns. After every case the inputs
are unchanged and the output's parent folder holds nothing new."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tadrop.cli import main
from tests.family_fixtures import SHAPES, write_family

HEAD = """\
base: models/base
models:
  task0: models/task0
  task1: models/task1
"""


def _retype(dtype: torch.dtype, task: str = "task0") -> Callable[[Path], None]:
    """Store one fine-tuned tensor of ``task`` in ``dtype``."""

    def setup(root: Path) -> None:
        path = root / "models" / task / "model.safetensors"
        state = load_file(str(path))
        name = "encoder.layer.0.attention.self.query.weight"
        state[name] = (state[name] * 100).to(dtype)
        save_file(state, str(path))

    return setup


def _family_with(extra: dict[str, tuple[int, ...]]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        for child in (root / "models").iterdir():
            for file in child.iterdir():
                file.unlink()
            child.rmdir()
        write_family(root / "models", tasks=2, shapes={**SHAPES, **extra})

    return setup


def _eval_data(root: Path) -> None:
    (root / "evaldata").mkdir()
    (root / "evaldata" / "task0.csv").write_text("text,label\nhello,1\n")


def _bytes(data: bytes) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / "run.yaml").write_bytes(data)

    return setup


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


@dataclass(frozen=True)
class Case:
    id: str
    config: str  # YAML text of run.yaml (in the work folder; models under models/)
    fragment: str  # the message must contain it
    code: int = 2
    args: tuple[str, ...] = ("--dry-run",)
    setup: Callable[[Path], None] | None = None  # alter the family before the run


CASES = [
    # --- non-finite and out-of-range hyper-parameters: refused at validation (--dry-run) ---
    Case(
        "ties-scaling-nan",
        HEAD + "method: ties\nmethod_params: {scaling: .nan}\n",
        "run.yaml:6: method_params.scaling: must be a finite number",
    ),
    Case(
        "ties-scaling-nan-real-run",
        HEAD + "method: ties\nmethod_params: {scaling: .nan}\noutput: {path: out}\n",
        "method_params.scaling: must be a finite number",
        args=(),
    ),
    Case(
        "task-arithmetic-scaling-inf",
        HEAD + "method: task_arithmetic\nmethod_params: {scaling: .inf}\n",
        "method_params.scaling: must be a finite number",
    ),
    Case(
        "task-weight-nan",
        HEAD + "method: task_arithmetic\nmethod_params: {weights: {task0: .nan}}\n",
        "the weight of task 'task0' must be a finite number",
    ),
    Case(
        "task-weight-unknown-task",
        HEAD + "method: task_arithmetic\nmethod_params: {weights: {taskX: 0.5}}\n",
        "method_params.weights: names unknown task(s) ['taskX']",
    ),
    Case(
        "task-weights-as-list",
        HEAD + "method: task_arithmetic\nmethod_params: {weights: [1.0, 0.5, 2.0]}\n",
        "expected a mapping task -> number",
    ),
    Case(
        "della-epsilon-nan",
        HEAD + "method: della\nsparsifier_params: {epsilon: .nan}\n",
        "sparsifier_params.epsilon: must be a finite number",
    ),
    Case(
        "della-epsilon-too-wide",
        HEAD + "method: della\nsparsifier_params:\n  density: 0.9\n  epsilon: 0.5\n",
        "run.yaml:8: sparsifier_params.epsilon: DELLA needs",
    ),
    Case(
        "breadcrumbs-gamma-nan",
        HEAD + "method: ties\nsparsifier: breadcrumbs\nsparsifier_params: {gamma: .nan}\n",
        "sparsifier_params.gamma: must be a finite number",
    ),
    Case(
        "tadrop-b-reported-under-b",
        HEAD + "method: ties\nsparsifier: tadrop\nsparsifier_params:\n  a: 0.45\n  b: 1.5\n",
        "run.yaml:9: sparsifier_params.b: TADrop needs quantiles 0 < a < b < 1",
    ),
    Case(
        "magnitude-density-bool",
        HEAD + "method: ties\nsparsifier: magnitude\nsparsifier_params: {density: true}\n",
        "sparsifier_params.density: expected a number (default 0.2), got True",
    ),
    # --- task names become EMR's task-model folders ---
    *(
        Case(
            f"task-name-{label}",
            f"base: models/base\nmodels:\n  {name!r}: models/task0\n  task1: models/task1\n"
            "method: emr\n",
            "is not a safe folder name",
        )
        for label, name in [
            ("parent", "../../X"),
            ("absolute", "/tmp/X"),
            ("dot", "."),
            ("dotdot", ".."),
            ("separator", "a/b"),
            ("backslash", "a\\b"),
        ]
    ),
    Case(
        "task-name-empty",
        "base: models/base\nmodels:\n  '': models/task0\n  task1: models/task1\nmethod: emr\n",
        "is empty",
    ),
    Case(
        "demo-task-weight-unknown-task",
        "demo: {zoo: text, size: quick}\nmethod: task_arithmetic\n"
        "method_params: {weights: {taskX: 0.5}}\n",
        "method_params.weights: names unknown task(s) ['taskX']",
    ),
    Case(
        "demo-unknown-task",
        "demo: {zoo: text, size: quick, tasks: [tweet_sentiment, nope]}\nmethod: emr\n",
        "run.yaml:1: demo.tasks[1]: unknown task 'nope'; the text zoo has",
    ),
    # --- the family: dtypes, empty tensors ---
    Case(
        "int32-finetuned-vs-float-base",
        HEAD + "method: task_arithmetic\n",
        "is torch.int32, the base",
        setup=_retype(torch.int32),
    ),
    Case(
        "empty-tensor",
        HEAD + "method: task_arithmetic\n",
        "tensor 'empty' has shape (0, 4), no elements",
        setup=_family_with({"empty": (0, 4)}),
    ),
    # --- outputs over inputs (even with --overwrite) ---
    Case(
        "overwrite-folder-holding-the-config",
        HEAD + "method: task_arithmetic\noutput: {path: ., overwrite: true}\n",
        "is (or contains) the input",
        args=(),
    ),
    Case(
        "output-is-the-base",
        HEAD + "method: task_arithmetic\noutput: {path: models/base, overwrite: true}\n",
        "is (or contains) the input",
        args=(),
    ),
    Case(
        "output-holds-eval-data",
        HEAD + "method: task_arithmetic\noutput: {path: evaldata, overwrite: true}\n"
        "eval: {data: {task0: evaldata/task0.csv}}\n",
        "is (or contains) the input",
        args=("--overwrite",),
        setup=_eval_data,
    ),
    # --- the YAML itself ---
    Case("yaml-alias-bomb", BOMB, "expands to more than 10,000 values"),
    Case("yaml-recursive-alias", "a: &a [*a]\n", "recursive alias"),
    Case(
        "yaml-too-many-aliases",
        "a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n",
        "more than 100 aliases",
    ),
    Case("yaml-deep-nesting", "a: " + "[" * 500 + "]" * 500 + "\n", "nested deeper than 64"),
    Case("yaml-not-utf8", "", "run.yaml: not UTF-8 text", setup=_bytes(b"method: \xff ties\n")),
    Case("yaml-too-large", "", "larger than 1,048,576 bytes", setup=_bytes(b"#" * (1 << 21))),
    # --- sweeps state their size and are refused above the limit ---
    Case(
        "sweep-9-million-points",
        HEAD
        + "method: ties\nsparsifier: tadrop\nsweep:\n  sparsifier_params:\n"
        + "".join(f"    {key}: [{', '.join(['0.5'] * 30)}]\n" for key in ("a", "b", "eps"))
        + "  method_params:\n"
        + f"    scaling: [{', '.join(['1.0'] * 30)}]\n"
        + f"    elect: [{', '.join(['mass'] * 12)}]\n",
        "has 9,720,000 points (the product of the value counts), more than the limit of 1,000",
    ),
    Case(
        "sweep-above-max-points",
        HEAD + "method: task_arithmetic\nsweep:\n  max_points: 2\n"
        "  method_params: {scaling: [0.1, 0.2, 0.3]}\n",
        "has 3 points",
    ),
    # --- the last guards: finite parameters whose result does not fit (exit 1) ---
    Case(
        "float16-output-overflows-names-the-parameters",
        HEAD + "method: task_arithmetic\nmethod_params: {scaling: 1000.0}\n"
        "output: {path: out, dtype: float16}\n",
        "It was made by: method task_arithmetic(scaling=1000.0, weights=None), sparsifier none",
        code=1,
        args=(),
        setup=_retype(torch.float32),
    ),
    Case(
        "merged-tensor-overflows",
        HEAD + "method: task_arithmetic\nmethod_params: {scaling: 1.0e+38}\noutput: {path: out}\n",
        "holds NaN or Inf values (method task_arithmetic(scaling=1e+38, weights=None), "
        "sparsifier none); nothing was written",
        code=1,
        args=(),
        setup=_retype(torch.float32),
    ),
]


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file()
        else "dir"
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_family(tmp_path / "models", tasks=2)
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "run.yaml").write_text(case.config)
    if case.setup is not None:
        case.setup(workdir)
    before = _snapshot(workdir)
    started = time.perf_counter()
    code = main(["merge", str(workdir / "run.yaml"), *case.args, "--json"])
    seconds = time.perf_counter() - started
    captured = capsys.readouterr()
    payload = json.loads(captured.out.strip().splitlines()[-1])
    assert (code, payload["ok"]) == (case.code, False), captured
    assert case.fragment in payload["error"], payload["error"]
    assert _snapshot(workdir) == before  # inputs unchanged, nothing left beside the output
    assert seconds < 10, f"took {seconds:.1f} s"


def test_float_dtype_mismatch_is_a_note(workdir: Path, capsys) -> None:
    (workdir / "run.yaml").write_text(HEAD + "method: task_arithmetic\noutput: {path: out}\n")
    _retype(torch.bfloat16)(workdir)
    assert main(["merge", str(workdir / "run.yaml"), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    (note,) = payload["plan"]["notes"]
    assert "1 fine-tuned tensor(s) are bfloat16 where the base is float32" in note
    assert "task0:encoder.layer.0.attention.self.query.weight" in note
    # the output exists now: a dry run refuses it like the real run, unless --overwrite
    assert main(["merge", str(workdir / "run.yaml"), "--dry-run", "--overwrite"]) == 0
    assert "note:        1 fine-tuned tensor(s) are bfloat16" in capsys.readouterr().out


def test_sweep_states_its_size(workdir: Path, capsys) -> None:
    (workdir / "run.yaml").write_text(
        HEAD + "method: task_arithmetic\nsweep:\n  max_points: 3\n"
        "  method_params: {scaling: [0.1, 0.2, 0.3]}\n"
    )
    assert main(["merge", str(workdir / "run.yaml"), "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sweep_size"] == 3
    assert main(["merge", str(workdir / "run.yaml"), "--dry-run"]) == 0
    assert "sweep:       3 points" in capsys.readouterr().out


def test_zero_d_and_one_element_tensors_merge_end_to_end(workdir: Path, capsys) -> None:
    _family_with({"logit_scale": (), "one": (1,)})(workdir)
    (workdir / "run.yaml").write_text(
        HEAD + "method: ties\nsparsifier: tadrop\noutput: {path: out}\n"
    )
    assert main(["merge", str(workdir / "run.yaml"), "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tensors"] == len(SHAPES) + 2
    assert main(["merge", str(workdir / "run.yaml"), "--json"]) == 0
    merged = load_file(str(workdir / "out" / "model.safetensors"))
    assert merged["logit_scale"].shape == () and merged["one"].shape == (1,)


def test_emr_task_name_refused_from_python(workdir: Path) -> None:
    from tadrop.task_vectors import FamilyError, load_family

    models = workdir / "models"
    with pytest.raises(FamilyError, match="not a safe folder name"):
        load_family(models / "base", {"../../X": models / "task0"})

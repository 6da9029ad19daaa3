"""The ``tadrop`` command on a small synthetic family: outputs, exit codes, --json, --dry-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tadrop.cli import main
from tadrop.cli.demo import dashboard_command
from tadrop.stats import load_stats
from tests.family_fixtures import write_family

CONFIG = """\
base: models/base
models: [models/task0, models/task1, models/task2]
method: task_arithmetic
method_params: {scaling: 0.5}
sparsifier: tadrop
output: {path: merged}
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    write_family(tmp_path / "models", tasks=3)
    (tmp_path / "run.yaml").write_text(CONFIG)
    return tmp_path


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines  # --json prints exactly one object
    return code, json.loads(lines[0])


def test_stats_writes_parquet_table(workdir: Path, capsys) -> None:
    output = workdir / "stats.parquet"
    models = workdir / "models"
    code, payload = run_json(
        [
            "stats",
            str(models / "base"),
            str(models / "task0"),
            str(models / "task1"),
            "-o",
            str(output),
        ],
        capsys,
    )
    assert code == 0 and payload["rows"] == 2 * 9
    table = load_stats(output)
    assert sorted(table["task"].unique()) == ["task0", "task1"]
    assert set(payload["overall_drop_rate"]) == {"task0", "task1"}


def test_stats_refuses_to_overwrite_and_missing_inputs(workdir: Path, capsys) -> None:
    models = workdir / "models"
    output = workdir / "stats.csv"
    output.write_text("old")
    assert main(["stats", str(models / "base"), str(models / "task0"), "-o", str(output)]) == 2
    assert output.read_text() == "old"
    assert "--overwrite" in capsys.readouterr().err
    assert (
        main(["stats", str(models / "base"), str(models / "nope"), "-o", str(workdir / "s.csv")])
        == 2
    )
    assert "nope: no such file" in capsys.readouterr().err
    assert (
        main(["stats", str(models / "base"), str(models / "task0"), "-o", str(workdir / "s.txt")])
        == 2
    )


def test_merge_matches_the_library(workdir: Path, capsys) -> None:
    code, payload = run_json(["merge", str(workdir / "run.yaml")], capsys)
    assert code == 0
    written = load_file(str(workdir / "merged" / "model.safetensors"))
    from tadrop.merge import run_merge
    from tadrop.registry import build_merge
    from tadrop.task_vectors import load_family

    family = load_family(workdir / "models/base", [workdir / f"models/task{i}" for i in range(3)])
    expected = run_merge(
        family, *build_merge("task_arithmetic", "tadrop", {"scaling": 0.5}), device="cpu"
    ).model_for()
    for name, tensor in expected.items():
        assert torch.equal(written[name], tensor), name
    assert payload["outputs"][0]["path"] == str(workdir / "merged")
    assert 0 < payload["outputs"][0]["sparsity"]["task0"] < 1


def test_merge_refuses_existing_output_then_overwrites(workdir: Path, capsys) -> None:
    (workdir / "merged").mkdir()
    (workdir / "merged" / "keep.txt").write_text("mine")
    assert main(["merge", str(workdir / "run.yaml")]) == 2
    assert (workdir / "merged" / "keep.txt").read_text() == "mine"
    assert main(["merge", str(workdir / "run.yaml"), "--overwrite", "-q"]) == 0
    assert (workdir / "merged" / "model.safetensors").is_file()
    assert capsys.readouterr().out == ""  # --quiet


def test_dry_run_reads_no_tensor_and_writes_nothing(workdir: Path, capsys, monkeypatch) -> None:
    from tadrop.io.checkpoint import FileCheckpoint

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was read during --dry-run")

    monkeypatch.setattr(FileCheckpoint, "get", refuse)
    code, payload = run_json(["merge", str(workdir / "run.yaml"), "--dry-run"], capsys)
    assert code == 0 and not (workdir / "merged").exists()
    assert payload["tensors"] == 9 and payload["tasks"] == ["task0", "task1", "task2"]
    assert "embeddings.position_ids" in payload["skipped"]
    memory = payload["memory"]  # streamed: no merged model held, one tensor while writing
    assert memory["result_bytes"] == 0
    merged_bytes = 4 * payload["parameters"]  # float32 base
    assert memory["disk_bytes_per_point"] == merged_bytes + 12 * 8
    assert memory["write_bytes"] == 4 * 16 * 8  # the largest tensor, (16, 8) float32
    (workdir / "emr.yaml").write_text(
        CONFIG.replace("task_arithmetic\nmethod_params: {scaling: 0.5}", "emr")
    )
    code, payload = run_json(["merge", str(workdir / "emr.yaml"), "--dry-run"], capsys)
    # EMR walks twice and holds no model: one tensor per task (3) while writing
    assert payload["memory"]["result_bytes"] == 0
    assert payload["memory"]["write_bytes"] == 3 * 4 * 16 * 8
    assert payload["memory"]["disk_bytes_per_point"] == 3 * memory["disk_bytes_per_point"]


def test_bad_config_exits_2_with_line(workdir: Path, capsys) -> None:
    (workdir / "bad.yaml").write_text(CONFIG.replace("scaling: 0.5", "scalling: 0.5"))
    assert main(["merge", str(workdir / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:4: method_params.scalling" in err and "scaling (default 0.3)" in err


def test_runtime_failure_exits_1_and_writes_nothing(workdir: Path, capsys) -> None:
    from safetensors.torch import save_file

    state = load_file(str(workdir / "models/task2/model.safetensors"))
    state["encoder.layer.1.output.dense.weight"][0, 0] = float("nan")  # found only while merging
    save_file(state, str(workdir / "models/task2/model.safetensors"))
    assert main(["merge", str(workdir / "run.yaml")]) == 1
    assert "encoder.layer.1.output.dense.weight" in capsys.readouterr().err
    assert not (workdir / "merged").exists()
    assert [
        p.name for p in workdir.iterdir() if p.name.startswith(".")
    ] == []  # no temp folder left


def test_ctrl_c_while_writing_leaves_no_half_written_output(
    workdir: Path, capsys, monkeypatch
) -> None:
    import tadrop.io.safetensors_format

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # both writers (plain and planned) put each tensor's bytes through tensor_bytes
    monkeypatch.setattr(tadrop.io.safetensors_format, "tensor_bytes", interrupted)
    assert main(["merge", str(workdir / "run.yaml")]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in workdir.iterdir()) == ["models", "run.yaml"]


def test_template_config_is_refused_by_merge(workdir: Path, capsys) -> None:
    (workdir / "t.yaml").write_text("template: true\n" + CONFIG)
    assert main(["merge", str(workdir / "t.yaml")]) == 2
    assert "template" in capsys.readouterr().err


def test_sweep_writes_one_folder_per_point(workdir: Path, capsys) -> None:
    (workdir / "sweep.yaml").write_text(CONFIG + "sweep:\n  sparsifier_params: {a: [0.3, 0.6]}\n")
    code, payload = run_json(["merge", str(workdir / "sweep.yaml")], capsys)
    assert code == 0
    assert sorted(p.name for p in (workdir / "merged").iterdir()) == ["a=0.3", "a=0.6"]
    sparsity = [item["sparsity"]["task0"] for item in payload["outputs"]]
    assert sparsity[0] < sparsity[1]  # a higher lower quantile drops more


def test_emr_writes_one_model_per_task(workdir: Path, capsys) -> None:
    (workdir / "emr.yaml").write_text(
        CONFIG.replace("method: task_arithmetic\nmethod_params: {scaling: 0.5}", "method: emr")
    )
    code, payload = run_json(["merge", str(workdir / "emr.yaml")], capsys)
    assert code == 0
    assert sorted(p.name for p in (workdir / "merged").iterdir()) == ["task0", "task1", "task2"]
    task0 = load_file(str(workdir / "merged/task0/model.safetensors"))
    task1 = load_file(str(workdir / "merged/task1/model.safetensors"))
    assert not torch.equal(
        task0["encoder.layer.0.output.dense.weight"], task1["encoder.layer.0.output.dense.weight"]
    )


def test_usage_errors_exit_2(capsys) -> None:
    assert main(["merg"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main([]) == 2


def test_dashboard_command_line(tmp_path: Path) -> None:
    command, environ = dashboard_command(8600, [str(tmp_path)])
    # serve.py imports what the pages need, then hands over to `streamlit run` (same arguments)
    assert command[1].endswith("dashboard/serve.py") and command[2] == "run"
    assert command[3].endswith("dashboard/app.py")
    assert ["--server.port", "8600"] == command[-2:] and "--server.headless" in command
    assert environ["TADROP_DATA_ROOT"] == str(tmp_path)


def test_console_script_entry_point(workdir: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tadrop.cli",
            "merge",
            str(workdir / "run.yaml"),
            "--dry-run",
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["method"] == "task_arithmetic"


def write_tiny_bert_family(root: Path) -> None:
    """A 1-layer BERT sequence classifier (base) and two perturbed copies, as HF folders."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    root.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "great", "awful", "film"]
    (root / "vocab.txt").write_text("\n".join(words) + "\n")
    config = BertConfig(
        vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16, num_labels=2,
        id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1},
    )  # fmt: skip
    tokenizer = BertTokenizer(str(root / "vocab.txt"))
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    base_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    for folder, scale in (("base", 0.0), ("task_a", 0.05), ("task_b", 0.1)):
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                if tensor.is_floating_point():
                    tensor.copy_(base_state[name] + scale * torch.randn_like(tensor))
        model.save_pretrained(root / folder)
        tokenizer.save_pretrained(root / folder)
    for task in ("task_a", "task_b"):
        (root / f"{task}.csv").write_text(
            "text,label\ngood film,pos\nbad film,neg\ngreat,pos\nawful,neg\n"
        )


def test_own_hf_models_merge_and_eval(tmp_path: Path, capsys) -> None:
    """The new-user path: own models + one YAML -> merged HF folder and an evaluation table."""
    write_tiny_bert_family(tmp_path / "hf")
    config = tmp_path / "hf" / "mine.yaml"
    config.write_text(
        "base: base\nmodels: {task_a: task_a, task_b: task_b}\nmethod: ties\nsparsifier: tadrop\n"
        "exclude: classifier\noutput: {path: merged, dtype: float16}\n"
        "eval: {data: {task_a: task_a.csv, task_b: task_b.csv}}\n"
    )
    assert main(["merge", str(config), "-q"]) == 0
    from transformers import BertForSequenceClassification

    merged_dir = tmp_path / "hf" / "merged"
    written = load_file(str(merged_dir / "model.safetensors"))
    assert written["bert.encoder.layer.0.output.dense.weight"].dtype == torch.float16
    base = load_file(str(tmp_path / "hf" / "base" / "model.safetensors"))
    excluded = written["classifier.weight"].float()  # not merged: the base's values
    torch.testing.assert_close(excluded, base["classifier.weight"], rtol=1e-3, atol=1e-4)
    BertForSequenceClassification.from_pretrained(merged_dir)  # loads as a Hugging Face model
    assert (merged_dir / "tokenizer_config.json").is_file()  # tokenizer copied from the base
    code, payload = run_json(["eval", str(config)], capsys)
    assert code == 0
    rows = payload["rows"]
    assert [row["task"] for row in rows] == ["task_a", "task_b"]
    assert all(0 <= row["merged"] <= 1 and 0 <= row["individual"] <= 1 for row in rows)
    saved = (tmp_path / "hf" / "merged.eval.csv").read_text().splitlines()
    assert saved[0] == (
        "point,task,metric,merged,individual,base,normalized,"
        "n,merged_stderr,individual_stderr,base_stderr,sparsity"
    )
    assert [row["n"] for row in rows] == [4, 4]


SAMPLES = sorted((Path(__file__).parent.parent / "sample_configs").glob("*.yaml"))


@pytest.mark.slow
def test_demo_sample_configs_run_on_the_quick_zoo(quick_text_zoo) -> None:
    """Every text-zoo sample config merges and evaluates (a sweep: its first and last points).
    To keep the time small, one family and one evaluator are shared, the family is two tasks
    and the last encoder layer (other tensors stay at the base), scored on 32 examples."""
    from tadrop.config import load_config
    from tadrop.evaluate import ZooEvaluator, evaluate
    from tadrop.merge import run_merge
    from tadrop.report.bench import ZooHalf
    from tadrop.task_vectors import load_family

    tasks = quick_text_zoo.tasks[:2]
    paths = {task: quick_text_zoo.task_dirs[task] for task in tasks}
    family = load_family(quick_text_zoo.base_dir, paths, include=r"encoder\.layer\.5\.")
    evaluator = ZooEvaluator(ZooHalf(quick_text_zoo, "test", limit=32))
    ran = []
    for path in SAMPLES:
        config = load_config(path)
        if config.demo is None or config.demo.zoo != "text":
            continue
        grid = config.grid()
        for label, method_params, sparsifier_params in {
            grid[0][0]: grid[0],
            grid[-1][0]: grid[-1],
        }.values():
            result = run_merge(
                family, *config.build(method_params, sparsifier_params), device="cpu"
            )
            table = evaluate(result.model_for, evaluator, tasks)
            assert list(table["task"]) == tasks and table["merged"].between(0, 1).all(), path.name
            ran.append(f"{path.stem} {label}".strip())
    assert len(ran) == 13  # 11 single configs + the sweep's first and last points


@pytest.mark.slow
def test_demo_config_through_the_command_line(
    quick_text_zoo, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("TADROP_HOME", str(quick_text_zoo.root.parent.parent))
    config = tmp_path / "demo.yaml"
    tasks = quick_text_zoo.tasks[:2]
    config.write_text(
        f"demo: {{zoo: text, size: quick, tasks: {tasks}}}\nmethod: emr\nsparsifier: tadrop\n"
        "include: encoder\\.layer\\.5\\.\noutput: {path: out}\n"  # one layer: a fast merge
    )
    code, payload = run_json(["merge", str(config)], capsys)
    assert code == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(tasks)
    code, payload = run_json(["eval", str(config)], capsys)
    assert code == 0 and [row["task"] for row in payload["rows"]] == tasks
    individual = {task: quick_text_zoo.individual_scores()[task]["accuracy"] for task in tasks}
    assert [row["individual"] for row in payload["rows"]] == [individual[t] for t in tasks]
    assert (tmp_path / "out.eval.csv").is_file()

"""Causal LM evaluation on a tiny Llama family: each metric equals a hand computation from the
model's logits on a 3-example file; individual models beat the base on their task and a task
arithmetic merge lands between; the CLI, the README's example and the dashboard score it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from eval_fixtures import example_module, state_dict, task_arithmetic
from transformers import AutoTokenizer, LlamaForCausalLM

from tadrop.evaluate import CausalLMEvaluator, EvaluationError, infer_kind
from tadrop.evaluate.causal_lm import first_line
from tadrop.evaluate.lm_data import check_lm_file, infer_lm_metric

TASKS = ("up", "down")


@pytest.fixture(scope="module")
def lm(tiny_families):
    return tiny_families / "lm"


@pytest.fixture(scope="module")
def models(lm):
    base = state_dict(lm / "base")
    tasks = {task: state_dict(lm / task) for task in TASKS}
    return {"base": base, **tasks, "merged": task_arithmetic(base, list(tasks.values()))}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def token_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t >= 1, by hand from one forward pass."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(logits, dim=-1)[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


def test_individual_models_beat_the_base_and_the_merge_lands_between(lm, models):
    evaluator = CausalLMEvaluator(
        lm / "base", {task: lm / "data" / f"{task}.txt" for task in TASKS}, device="cpu"
    )
    perplexity = {
        (name, task): evaluator.evaluate(task, models[name])["perplexity"]
        for name in ("base", "merged", *TASKS)
        for task in TASKS
    }
    for task in TASKS:  # lower is better
        assert perplexity[task, task] < perplexity["merged", task] < perplexity["base", task]
    choice = CausalLMEvaluator(
        lm / "base", {task: lm / "data" / f"{task}_choice.jsonl" for task in TASKS}, device="cpu"
    )
    for task in TASKS:
        accuracy = {name: choice.evaluate(task, models[name])["acc"] for name in ("base", task)}
        assert accuracy[task] > accuracy["base"]


def test_perplexity_equals_the_hand_computation(lm, models, tmp_path):
    text = tmp_path / "three.txt"
    documents = ["+abc= bcd", "-hag= gfh", "+ddd= eee"]
    text.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    evaluator = CausalLMEvaluator(lm / "base", {"up": text}, device="cpu")
    scores = evaluator.evaluate("up", models["up"])
    model = LlamaForCausalLM.from_pretrained(lm / "up").eval()
    tokenizer = AutoTokenizer.from_pretrained(lm / "up")
    nll = torch.cat(
        [
            -token_logprobs(
                model, [tokenizer.bos_token_id, *tokenizer.encode(doc, add_special_tokens=False)]
            )
            for doc in documents
        ]
    )
    assert scores["n"] == len(nll) == 3 * 9  # BOS predicts nothing; 9 characters each
    assert scores["perplexity"] == pytest.approx(math.exp(float(nll.mean())), rel=1e-5)
    expected_stderr = scores["perplexity"] * float(nll.std()) / math.sqrt(len(nll))
    assert scores["perplexity_stderr"] == pytest.approx(expected_stderr, rel=1e-4)


def test_acc_and_acc_norm_equal_the_hand_computation_where_they_differ(lm, models, tmp_path):
    """A short and a long choice: the summed log-likelihood favours the short one, the
    per-character one (lm-evaluation-harness's acc_norm) the long one."""
    records = [
        {"question": "+abc=", "choices": ["b", "bcdefghabc"], "answer": 1},
        {"question": "-def=", "choices": ["cde", "c"], "answer": "cde"},
        {"question": "+hhh=", "choices": ["a", "aaaaaaaaa", "zz"], "answer": 1},
    ]
    data = write_jsonl(tmp_path / "three.jsonl", records)
    scores = CausalLMEvaluator(lm / "base", {"t": data}, device="cpu").evaluate("t", models["base"])
    model = LlamaForCausalLM.from_pretrained(lm / "base").eval()
    tokenizer = AutoTokenizer.from_pretrained(lm / "base")
    hits, hits_norm = [], []
    for record in records:
        context = [
            tokenizer.bos_token_id,
            *tokenizer.encode(record["question"], add_special_tokens=False),
        ]
        likelihoods = []
        for choice in record["choices"]:
            continuation = tokenizer.encode(" " + choice, add_special_tokens=False)
            likelihoods.append(
                float(token_logprobs(model, context + continuation)[-len(continuation) :].sum())
            )
        answer = record["answer"]
        gold = answer if isinstance(answer, int) else record["choices"].index(answer)
        normed = [
            value / len(choice)
            for value, choice in zip(likelihoods, record["choices"], strict=True)
        ]
        hits.append(max(range(len(likelihoods)), key=likelihoods.__getitem__) == gold)
        hits_norm.append(max(range(len(normed)), key=normed.__getitem__) == gold)
    assert scores["n"] == 3
    assert scores["acc"] == pytest.approx(sum(hits) / 3)
    assert scores["acc_norm"] == pytest.approx(sum(hits_norm) / 3)
    assert scores["acc"] != scores["acc_norm"]  # the file is built so that they differ
    p = scores["acc"]
    assert scores["acc_stderr"] == pytest.approx(math.sqrt(p * (1 - p) / 3))


def test_exact_match_equals_greedy_generation_one_prompt_at_a_time(lm, models, tmp_path):
    module = example_module()
    prompts = [module.lm_example("up", word) for word in ("abc", "hgf")] + [("+ab=", "zz")]
    records = [{"prompt": prompt, "answer": answer} for prompt, answer in prompts]
    data = write_jsonl(tmp_path / "three.jsonl", records)
    scores = CausalLMEvaluator(lm / "base", {"up": data}, device="cpu", batch_size=3).evaluate(
        "up", models["up"]
    )
    model = LlamaForCausalLM.from_pretrained(lm / "up").eval()
    tokenizer = AutoTokenizer.from_pretrained(lm / "up")
    hits = []
    for prompt, answer in prompts:
        ids = torch.tensor(
            [[tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]]
        )
        out = model.generate(input_ids=ids, max_new_tokens=32, do_sample=False, pad_token_id=0)
        hits.append(
            first_line(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)) == answer
        )
    assert scores == pytest.approx(
        {
            "exact_match": sum(hits) / 3,
            "exact_match_stderr": math.sqrt(sum(hits) / 3 * (1 - sum(hits) / 3) / 3),
            "n": 3,
        }
    )
    assert hits[2] is False


def test_files_tell_their_metric_or_say_what_to_write(lm, tmp_path):
    assert infer_lm_metric(lm / "data" / "up.txt") == "perplexity"
    assert infer_lm_metric(lm / "data" / "up_choice.jsonl") == "multiple_choice"
    assert infer_lm_metric(lm / "data" / "up_generate.jsonl") == "exact_match"
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"input": "x", "target": "y"}])
    with pytest.raises(ValueError, match="cannot tell the metric.*set eval.metric"):
        infer_lm_metric(odd)
    with pytest.raises(ValueError, match=r"needs the keys \['choices', 'question'\]"):
        check_lm_file(lm / "data" / "up_generate.jsonl", "multiple_choice")
    bad = write_jsonl(
        tmp_path / "bad.jsonl", [{"question": "q", "choices": ["a", "b"], "answer": 5}]
    )
    with pytest.raises(ValueError, match="record 1: 'answer' 5"):
        CausalLMEvaluator(lm / "base", {"t": bad}, device="cpu").evaluate("t", {})


def test_state_dicts_of_another_model_are_refused(lm, models):
    evaluator = CausalLMEvaluator(lm / "base", {"up": lm / "data" / "up.txt"}, device="cpu")
    with pytest.raises(EvaluationError, match="not in the model"):
        evaluator.evaluate("up", {"encoder.weight": torch.zeros(2)})
    name = "model.embed_tokens.weight"
    with pytest.raises(EvaluationError, match="has shape"):
        evaluator.evaluate("up", {name: torch.zeros(3, 3)})


def test_a_left_out_tensor_is_the_bases_even_after_another_model(lm, models):
    """Scoring a model, then a state dict without one tensor, restores that tensor."""
    evaluator = CausalLMEvaluator(lm / "base", {"up": lm / "data" / "up.txt"}, device="cpu")
    base_score = evaluator.evaluate("up", models["base"])
    evaluator.evaluate("up", models["up"])
    partial = {name: tensor for name, tensor in models["base"].items() if "layers.1" not in name}
    assert evaluator.evaluate("up", partial) == base_score


def test_kind_is_read_from_config_json(lm, tiny_families, tmp_path):
    assert infer_kind(lm / "base") == "causal_lm"
    assert infer_kind(tiny_families / "clip" / "base") == "clip"
    (tmp_path / "config.json").write_text('{"architectures": ["MysteryNet"]}')
    with pytest.raises(EvaluationError, match="cannot tell.*set eval.kind"):
        infer_kind(tmp_path)


def test_readme_example_evaluates_both_tiny_families_from_the_cli(tiny_families, capsys):
    """README "Evaluate your own models": the example's eval.yaml files run with exit 0 and
    print per-task scores with n and standard errors (individual and base measured too)."""
    import re

    from tadrop.cli import main

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"## Evaluate your own models\n.*?```bash\n(.*?)```", readme, re.S).group(1)
    script, *evals = [line.split("#")[0].split() for line in block.strip().splitlines()]
    assert script[:2] == ["python", "examples/tiny_eval_family.py"]  # what tiny_families ran
    assert [command[:2] for command in evals] == [["tadrop", "eval"]] * 2
    assert [Path(command[2]).relative_to(script[2]) for command in evals] == [
        Path("lm/eval.yaml"),
        Path("clip/eval.yaml"),
    ]
    for name, metric in (("lm", "acc_norm"), ("clip", "accuracy")):
        code = main(["eval", str(tiny_families / name / "eval.yaml"), "--overwrite"])
        printed = capsys.readouterr().out
        assert code == 0, printed
        header = printed.splitlines()[0]
        for column in ("merged", "individual", "base", "n", "merged_stderr", "base_stderr"):
            assert column in header.split()
        assert metric in printed and (tiny_families / name / "merged.eval.csv").is_file()


def test_cli_eval_refuses_a_family_whose_kind_it_cannot_tell(lm, tmp_path, capsys):
    import shutil

    from tadrop.cli import main

    for folder in ("base", "up"):
        shutil.copytree(lm / folder, tmp_path / folder)
    config = json.loads((tmp_path / "base" / "config.json").read_text())
    config["architectures"] = ["MysteryNet"]
    (tmp_path / "base" / "config.json").write_text(json.dumps(config))
    (tmp_path / "eval.yaml").write_text(
        "base: base\nmodels: [up]\nmethod: task_arithmetic\neval: {data: {up: up_data.txt}}\n"
    )
    (tmp_path / "up_data.txt").write_text("+abc= bcd\n")
    assert main(["eval", str(tmp_path / "eval.yaml")]) == 2
    error = capsys.readouterr().err
    assert "cannot tell which evaluator fits" in error and "set eval.kind" in error


def test_config_validation_names_the_task_whose_file_does_not_fit(lm, tmp_path):
    from tadrop.config import ConfigError, validate_config

    config = {
        "base": str(lm / "base"),
        "models": {"up": str(lm / "up")},
        "method": "task_arithmetic",
        "eval": {
            "kind": "causal_lm",
            "metric": "multiple_choice",
            "data": {"up": str(lm / "data" / "up.txt")},
        },
    }
    with pytest.raises(ConfigError, match="eval.data.up"):
        validate_config(config, folder=tmp_path)
    config["eval"]["data"]["up"] = str(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match="does not exist"):
        validate_config(config, folder=tmp_path)


def test_dashboard_scores_an_own_family_on_attached_files(tiny_families, monkeypatch):
    """Merge & evaluate on an own causal-LM family: one JSONL file per task typed under the
    data root; the run's table holds merged, individual and base scores with n."""
    from streamlit.testing.v1 import AppTest

    from dashboard.sources import FamilySource

    monkeypatch.setenv("TADROP_DATA_ROOT", str(tiny_families))
    monkeypatch.setenv("TADROP_HOME", str(tiny_families / "no_demo_here"))
    lm = tiny_families / "lm"
    source = FamilySource(
        label="tiny llama",
        base=str(lm / "base"),
        finetuned=(str(lm / "up"), str(lm / "down")),
        task_names=TASKS,
    )
    app_file = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    app = AppTest.from_file(str(app_file), default_timeout=120)
    app.session_state["demo_build_tried"] = True
    app.session_state["family_source"] = source
    app.run()
    app.switch_page("views/merge.py").run()
    assert app.checkbox(key="merge_evaluate").disabled  # nothing attached yet
    app.text_input(key="eval_data_up").set_value("lm/data/up_choice.jsonl").run()
    app.text_input(key="eval_data_down").set_value("../outside.jsonl").run()
    assert any("'..' are refused" in error.value for error in app.error)
    app.text_input(key="eval_data_down").set_value("lm/data/down_choice.jsonl").run()
    app.selectbox(key="merge_method").set_value("task_arithmetic").run()
    app.checkbox(key="merge_compare").uncheck().run()
    app.checkbox(key="merge_evaluate").check().run()
    app.button(key="merge_run").click().run()
    assert not app.exception and not [error.value for error in app.error]
    results = app.session_state["runs"][0].results
    assert set(results["task"]) == set(TASKS) and set(results["metric"]) == {"acc", "acc_norm"}
    assert results[["merged", "individual", "base"]].notna().all().all()
    assert (results["n"] == 24).all() and results["merged_stderr"].notna().all()
    assert list(app.selectbox(key="merge_metric").options) == ["acc", "acc_norm"]
    shown = app.table[0].value
    assert {"merged", "individual", "base", "n"} <= set(shown.columns)
    # the sparsity sweep scores its merges with the same evaluator (normalized to individual)
    app.multiselect(key="sweep_sparsifiers").set_value(["magnitude"]).run()
    app.text_input(key="sweep_targets").set_value("0.5").run()
    app.checkbox(key="sweep_baseline").uncheck().run()
    app.button(key="sweep_run").click().run()
    assert not app.exception and not [error.value for error in app.error]
    points = app.session_state["sweep_points"]
    assert list(points["score_kind"]) == ["mean normalized"] and points["score"].notna().all()


def test_harness_results_become_flat_scores_with_n():
    from tadrop.evaluate.harness import flatten_results

    output = {
        "results": {
            "mc": {"alias": "mc", "acc,none": 0.5, "acc_stderr,none": 0.1, "x,none": "N/A"}
        },
        "n-samples": {"mc": {"original": 30, "effective": 25}},
    }
    assert flatten_results(output, ["mc"]) == {"acc": 0.5, "acc_stderr": 0.1, "n": 25}


def test_harness_is_optional_and_says_how_to_install(lm):
    from tadrop.evaluate.harness import HarnessEvaluator, lm_eval_available

    if lm_eval_available():
        pytest.skip("lm_eval is installed: the refusal does not apply")
    with pytest.raises(EvaluationError, match=r"pip install 'tadrop\[lm-eval\]'"):
        HarnessEvaluator(lm / "base", {"up": "my_task"})


def test_harness_task_on_local_data_runs_on_the_in_memory_model(lm, models, tmp_path):
    pytest.importorskip("lm_eval.models.huggingface")
    from tadrop.evaluate.harness import HarnessEvaluator

    (tmp_path / "up_mc.yaml").write_text(
        "task: up_mc\ndataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{test: {lm / 'data' / 'up_choice.jsonl'}}}}}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: '{{answer}}'\n"
        "metric_list: [{metric: acc}, {metric: acc_norm}]\n"
    )
    evaluator = HarnessEvaluator(lm / "base", {"up": "up_mc"}, include_path=tmp_path, device="cpu")
    scores = evaluator.evaluate("up", models["merged"])
    ours = CausalLMEvaluator(
        lm / "base", {"up": lm / "data" / "up_choice.jsonl"}, device="cpu", add_bos=False
    ).evaluate("up", models["merged"])
    assert scores["n"] == ours["n"] == 24
    assert scores["acc"] == pytest.approx(ours["acc"])  # the harness's HFLM adds no BOS
    assert scores["acc_norm"] == pytest.approx(ours["acc_norm"])
    p = ours["acc"]
    assert scores["acc_stderr"] == pytest.approx(math.sqrt(p * (1 - p) / 23))  # n - 1 there


def test_table_inverts_perplexity_and_gives_reference_accuracies_a_stderr():
    from tadrop.evaluate import evaluate

    class Fixed:
        tasks = ["t"]

        def evaluate(self, task, state_dict):
            return {"perplexity": 4.0, "perplexity_stderr": 0.5, "acc": 0.5, "n": 16}

    individual = {"t": {"perplexity": 2.0, "acc": 0.75}}
    table = evaluate(lambda task: {}, Fixed(), individual=individual, base={"t": {"acc": 0.25}})
    rows = table.set_index("metric")
    assert rows.loc["perplexity", "normalized"] == 0.5  # individual / merged: lower is better
    assert rows.loc["acc", "normalized"] == pytest.approx(0.5 / 0.75)
    assert rows.loc["acc", "individual_stderr"] == pytest.approx(math.sqrt(0.75 * 0.25 / 16))
    assert rows.loc["acc", "base_stderr"] == pytest.approx(math.sqrt(0.25 * 0.75 / 16))
    assert rows.loc["perplexity", "merged_stderr"] == 0.5
    assert math.isnan(rows.loc["perplexity", "individual_stderr"])  # not a proportion

"""Evaluation of merged backbones: the zoo evaluator, the table, the Hugging Face evaluator."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch

from tadrop.evaluate import (
    COLUMNS,
    EvaluationError,
    Evaluator,
    HFSequenceClassificationEvaluator,
    ZooEvaluator,
    evaluate,
)
from tadrop.io import open_checkpoint
from tadrop.zoo.backbone_text import TextBackbone


def _state_dict(folder) -> dict[str, torch.Tensor]:
    checkpoint = open_checkpoint(folder)
    return {name: checkpoint.get(name) for name in checkpoint.keys()}


@pytest.fixture(scope="module")
def zoo_evaluator(quick_text_zoo) -> ZooEvaluator:
    return ZooEvaluator(quick_text_zoo)


@pytest.mark.slow  # reads the quick demo zoo (built once per session by conftest)
def test_each_finetuned_model_scores_exactly_what_the_manifest_recorded(
    quick_text_zoo, zoo_evaluator
):
    models = {task: _state_dict(quick_text_zoo.task_dirs[task]) for task in quick_text_zoo.tasks}
    table = evaluate(models.__getitem__, zoo_evaluator)
    assert list(table.columns) == COLUMNS
    assert table["task"].tolist() == quick_text_zoo.tasks
    assert (table["metric"] == "accuracy").all()
    assert table["merged"].tolist() == pytest.approx(table["individual"].tolist(), abs=1e-12)
    assert table["normalized"].tolist() == pytest.approx([1.0] * len(table))
    assert isinstance(zoo_evaluator, Evaluator)


@pytest.mark.slow  # reads the quick demo zoo (built once per session by conftest)
def test_task_arithmetic_merge_scores_between_chance_and_the_individual_models(
    quick_text_zoo, zoo_evaluator
):
    base = _state_dict(quick_text_zoo.base_dir)
    task_models = [open_checkpoint(d) for d in quick_text_zoo.task_dirs.values()]
    # Task arithmetic (Ilharco et al.): theta = theta_0 + lambda * sum_k tau_k, lambda = 0.3.
    merged = {
        name: tensor + 0.3 * sum(model.get(name) - tensor for model in task_models)
        for name, tensor in base.items()
    }
    table = evaluate(lambda task: merged, quick_text_zoo)  # a Zoo works as the evaluator
    for row in table.itertuples():
        chance = 1 / len(quick_text_zoo.label_names(row.task))
        assert chance < row.merged <= row.individual + 0.05, row
        assert row.normalized == pytest.approx(row.merged / row.individual)
        assert row.base == quick_text_zoo.base_scores()[row.task]["accuracy"]
    assert table["merged"].mean() < table["individual"].mean()


@pytest.mark.slow  # reads the quick demo zoo (built once per session by conftest)
def test_zoo_evaluator_rejects_state_dicts_of_another_model(quick_text_zoo, zoo_evaluator):
    base = _state_dict(quick_text_zoo.base_dir)
    task = quick_text_zoo.tasks[0]
    with pytest.raises(EvaluationError, match="unknown tensors.*classifier.weight"):
        zoo_evaluator.evaluate(task, {**base, "classifier.weight": torch.zeros(2, 384)})
    without_one = dict(base)
    del without_one["encoder.layer.0.output.dense.weight"]
    with pytest.raises(EvaluationError, match="missing tensors.*layer.0.output.dense.weight"):
        zoo_evaluator.evaluate(task, without_one)


def test_evaluate_without_reference_scores_leaves_them_empty():
    class Constant:
        def evaluate(self, task, state_dict):
            return {"accuracy": 0.5, "f1": 0.25}

    table = evaluate(lambda task: {}, Constant(), ["a", "b"], individual={"a": {"accuracy": 1.0}})
    assert table.shape == (4, len(COLUMNS))
    assert table.loc[0, "normalized"] == 0.5
    assert math.isnan(table.loc[1, "individual"]) and math.isnan(table.loc[2, "base"])
    with pytest.raises(EvaluationError, match="no tasks"):
        evaluate(lambda task: {}, Constant())


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    """A 2-layer BERT sequence classifier with the zoo's tokenizer, and a CSV of labelled texts."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny_classifier")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(TextBackbone.pretrained_dir())).save_pretrained(folder)
    texts = [f"example number {i} with some words" for i in range(40)]
    labels = ["neg", "pos"] * 20
    data_file = folder / "eval.csv"
    pd.DataFrame({"sentence": texts, "label": labels}).to_csv(data_file, index=False)
    return folder, data_file, model, texts, labels


def _expected_accuracy(model, folder, texts, labels) -> float:
    from transformers import AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(str(folder))(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        predicted = model(**tokens).logits.argmax(-1)
    truth = torch.tensor([0 if label == "neg" else 1 for label in labels])
    return float((predicted == truth).double().mean())


def test_hf_evaluator_scores_the_given_backbone_with_the_task_head(tiny_classifier):
    folder, data_file, model, texts, labels = tiny_classifier
    evaluator = HFSequenceClassificationEvaluator(
        {"toy": folder}, {"toy": data_file}, text_column="sentence", batch_size=16
    )
    assert evaluator.tasks == ["toy"]
    own = model.state_dict()
    backbone_without_prefix = {
        k[len("bert.") :]: v for k, v in own.items() if k.startswith("bert.")
    }
    expected = _expected_accuracy(model, folder, texts, labels)
    scores = evaluator.evaluate("toy", backbone_without_prefix)
    assert scores["accuracy"] == expected and scores["n"] == len(texts) == 40
    assert scores["accuracy_stderr"] == pytest.approx(math.sqrt(expected * (1 - expected) / 40))

    # Another backbone is scored with the task's own head, whatever head the state dict holds.
    torch.manual_seed(1)
    other = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in own.items()}
    shifted = evaluator.evaluate("toy", {**other, "classifier.weight": torch.zeros(2, 32)})
    reference = copy.deepcopy(model)
    reference.load_state_dict(
        {
            **other,
            "classifier.weight": own["classifier.weight"],
            "classifier.bias": own["classifier.bias"],
        }
    )
    assert shifted["accuracy"] == _expected_accuracy(reference, folder, texts, labels)


def test_hf_evaluator_errors_name_the_problem(tiny_classifier, tmp_path):
    folder, data_file, model, _, _ = tiny_classifier
    evaluator = HFSequenceClassificationEvaluator({"toy": folder}, {"toy": data_file})
    with pytest.raises(EvaluationError, match="no column 'text'"):
        evaluator.evaluate("toy", model.state_dict())
    bad_labels = tmp_path / "bad.jsonl"
    pd.DataFrame({"text": ["a", "b"], "label": ["neg", "maybe"]}).to_json(
        bad_labels, orient="records", lines=True
    )
    evaluator = HFSequenceClassificationEvaluator({"toy": folder}, {"toy": bad_labels})
    with pytest.raises(EvaluationError, match="maybe"):
        evaluator.evaluate("toy", model.state_dict())
    good = HFSequenceClassificationEvaluator(
        {"toy": folder}, {"toy": data_file}, text_column="sentence"
    )
    with pytest.raises(EvaluationError, match="lacks backbone tensors"):
        good.evaluate("toy", {"bert.pooler.dense.bias": torch.zeros(32)})
    with pytest.raises(EvaluationError, match="not in the model"):
        good.evaluate("toy", {"transformer.h.0.weight": torch.zeros(1)})

"""Accuracy of Hugging Face sequence classifiers (one fine-tuned folder per task, which keeps
its own classification head) on labelled CSV / JSON-lines files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from tadrop.evaluate.scores import EvaluationError, StateDict, accuracy_scores
from tadrop.task_vectors import resolve_device


class HFSequenceClassificationEvaluator:
    """Accuracy of Hugging Face sequence-classification models on your own labelled data.

    `models[task]` is the task's fine-tuned model folder (AutoModelForSequenceClassification:
    it supplies the tokenizer, the classification head and `label2id`); `data[task]` is a CSV
    or JSON-lines file with a text column and a label column (label ids, or label names found
    in the model's `label2id`). The state dict replaces the model's backbone tensors (names
    with or without the model's prefix, e.g. `bert.`); the task's own head is kept.
    """

    def __init__(
        self,
        models: Mapping[str, str | os.PathLike],
        data: Mapping[str, str | os.PathLike],
        *,
        text_column: str = "text",
        label_column: str = "label",
        batch_size: int = 32,
        max_length: int = 128,
        device: str = "auto",
    ) -> None:
        self.models = {task: Path(path) for task, path in models.items()}
        self.data = {task: Path(path) for task, path in data.items()}
        self.text_column = text_column
        self.label_column = label_column
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = resolve_device(device)
        self._cached: dict[str, tuple[Any, dict[str, torch.Tensor], torch.Tensor]] = {}

    @property
    def tasks(self) -> list[str]:
        return [task for task in self.models if task in self.data]

    def evaluate(self, task: str, state_dict: StateDict) -> dict[str, float]:
        model, inputs, labels = self._task(task)
        model.load_state_dict(self._with_backbone(model, state_dict, task), strict=True)
        predictions = []
        with torch.inference_mode():
            for start in range(0, len(labels), self.batch_size):
                batch = {
                    name: t[start : start + self.batch_size].to(self.device)
                    for name, t in inputs.items()
                }
                predictions.append(model(**batch).logits.argmax(dim=-1).cpu())
        return accuracy_scores(torch.cat(predictions) == labels)

    def _task(self, task: str) -> tuple[Any, dict[str, torch.Tensor], torch.Tensor]:
        if task not in self.models or task not in self.data:
            raise EvaluationError(f"no model or data for task {task!r}; tasks: {self.tasks}")
        if task not in self._cached:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            folder = str(self.models[task])
            model = AutoModelForSequenceClassification.from_pretrained(folder)
            model = model.eval().to(self.device)
            tokenizer = AutoTokenizer.from_pretrained(folder)
            texts, labels = self._read_data(task, model.config.label2id)
            inputs = tokenizer(
                texts,
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            )
            self._cached = {task: (model, dict(inputs), labels)}  # one task's model at a time
        return self._cached[task]

    def _read_data(self, task: str, label2id: Mapping[str, int]) -> tuple[list[str], torch.Tensor]:
        path = self.data[task]
        if path.suffix.lower() == ".csv":
            table = pd.read_csv(path)
        else:
            table = pd.read_json(path, lines=path.suffix.lower() in {".jsonl", ".ndjson"})
        for column in (self.text_column, self.label_column):
            if column not in table.columns:
                raise EvaluationError(
                    f"{path}: no column {column!r} (columns: {list(table.columns)}); "
                    "set text_column= / label_column="
                )
        labels = table[self.label_column]
        if not pd.api.types.is_integer_dtype(labels):
            unknown = sorted(set(labels.astype(str)) - set(label2id))
            if unknown:
                raise EvaluationError(
                    f"{path}: labels {unknown[:5]} are not in the model's label2id "
                    f"{dict(label2id)}; use label ids or the model's label names"
                )
            labels = labels.astype(str).map(label2id)
        texts = table[self.text_column].astype(str).tolist()
        return texts, torch.tensor(labels.to_numpy(dtype="int64"), dtype=torch.int64)

    @staticmethod
    def _with_backbone(model: Any, state_dict: StateDict, task: str) -> dict[str, torch.Tensor]:
        own = model.state_dict()
        prefix = f"{model.base_model_prefix}."
        replaced: dict[str, torch.Tensor] = {}
        for name, tensor in state_dict.items():
            target = name if name in own else prefix + name
            if target not in own:
                raise EvaluationError(
                    f"task {task!r}: tensor {name!r} is not in the model ({len(own)} tensors)"
                )
            if target.startswith(prefix):  # heads stay the task's own
                replaced[target] = tensor
        missing = [
            name
            for name, tensor in own.items()
            if name.startswith(prefix) and name not in replaced and tensor.is_floating_point()
        ]
        if missing:
            raise EvaluationError(
                f"task {task!r}: the state dict lacks backbone tensors {missing[:3]} "
                f"({len(missing)} in all)"
            )
        return {**own, **replaced}

"""How good is a merge: evaluators and the per-task evaluation table.

An evaluator scores one backbone state dict on one task: `evaluate(task, state_dict) ->
{metric: value}`. The merge supplies `model_for(task)`, the backbone to score for each task
(the same merged model for every task, except EMR which rebuilds one per task). Like the
paper, every task keeps its own fine-tuned classification head; only the backbone is merged.

    table = evaluate(result.model_for, load_zoo("text", "quick"))

gives one row per task and metric: `merged`, `individual` (the task's fine-tuned model),
`base` (the pretrained model with a linear probe) and `normalized = merged / individual`.
For the zoo, `individual` and `base` come from its manifest, so only merged models run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd
import torch

from tadrop.zoo.backbones import Backbone, Encoded
from tadrop.zoo.load import Zoo
from tadrop.zoo.training import accuracy, predict

COLUMNS = ["task", "metric", "merged", "individual", "base", "normalized"]
Scores = Mapping[str, Mapping[str, float]]
StateDict = Mapping[str, torch.Tensor]


class EvaluationError(ValueError):
    """A state dict or a data file does not fit the evaluator; the message says what to fix."""


@runtime_checkable
class Evaluator(Protocol):
    def evaluate(self, task: str, state_dict: StateDict) -> dict[str, float]:
        """Metrics of the backbone `state_dict` (with the task's own head) on `task`."""


class ZooEvaluator:
    """Accuracy on a demo zoo's held-out sets (text or image zoo): backbone + fine-tuned head.

    The backbone module is built once; each call loads the given tensors into it (tensors the
    state dict leaves out, which may only be non-float buffers, keep their base values). Test
    sets are encoded once and kept in memory.
    """

    def __init__(self, zoo: Zoo, *, batch_size: int = 128) -> None:
        self.zoo = zoo
        self.batch_size = batch_size
        self._backbone: Backbone | None = None
        self._module: torch.nn.Module | None = None
        self._base_state: dict[str, torch.Tensor] = {}
        self._eval_sets: dict[str, Encoded] = {}
        self._heads: dict[str, torch.nn.Linear] = {}

    @property
    def tasks(self) -> list[str]:
        return self.zoo.tasks

    def individual_scores(self) -> dict[str, dict[str, float]]:
        return self.zoo.individual_scores()

    def base_scores(self) -> dict[str, dict[str, float]]:
        return self.zoo.base_scores()

    def evaluate(self, task: str, state_dict: StateDict) -> dict[str, float]:
        backbone, module = self._loaded()
        module.load_state_dict(self._completed(state_dict), strict=True)
        if task not in self._eval_sets:
            self._eval_sets[task] = backbone.encode(self.zoo.load_eval_set(task))
            self._heads[task] = self.zoo.load_head(task, "finetuned")
        encoded = self._eval_sets[task]
        predictions = predict(backbone, module, self._heads[task], encoded, self.batch_size)
        return {"accuracy": accuracy(predictions, encoded.labels)}

    def _loaded(self) -> tuple[Backbone, torch.nn.Module]:
        if self._backbone is None or self._module is None:
            self._backbone = self.zoo.backbone()
            self._module = self._backbone.load(self.zoo.base_dir)
            self._base_state = {n: t.clone() for n, t in self._module.state_dict().items()}
        return self._backbone, self._module

    def _completed(self, state_dict: StateDict) -> dict[str, torch.Tensor]:
        unknown = [name for name in state_dict if name not in self._base_state]
        missing = [
            name
            for name, tensor in self._base_state.items()
            if name not in state_dict and tensor.is_floating_point()
        ]
        if unknown or missing:
            raise EvaluationError(
                f"the state dict does not match the {self.zoo.zoo} zoo's backbone "
                f"({self.zoo.base_dir / 'model.safetensors'}): unknown tensors {unknown[:3]}, "
                f"missing tensors {missing[:3]}. Pass every backbone tensor under the names "
                "used in the zoo's checkpoints (task heads are not part of the backbone)."
            )
        return {**self._base_state, **state_dict}


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
    ) -> None:
        self.models = {task: Path(path) for task, path in models.items()}
        self.data = {task: Path(path) for task, path in data.items()}
        self.text_column = text_column
        self.label_column = label_column
        self.batch_size = batch_size
        self.max_length = max_length
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
                batch = {name: t[start : start + self.batch_size] for name, t in inputs.items()}
                predictions.append(model(**batch).logits.argmax(dim=-1))
        return {"accuracy": accuracy(torch.cat(predictions), labels)}

    def _task(self, task: str) -> tuple[Any, dict[str, torch.Tensor], torch.Tensor]:
        if task not in self.models or task not in self.data:
            raise EvaluationError(f"no model or data for task {task!r}; tasks: {self.tasks}")
        if task not in self._cached:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            folder = str(self.models[task])
            model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
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


def evaluate(
    model_for: Callable[[str], StateDict] | Any,
    evaluator: Evaluator | Zoo,
    tasks: list[str] | None = None,
    *,
    individual: Scores | None = None,
    base: Scores | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> pd.DataFrame:
    """One row per task and metric: merged, individual, base and normalized (merged/individual).

    `model_for(task)` returns the backbone state dict to score for `task` (a MergeResult may
    be passed directly). `evaluator` may be a Zoo (its ZooEvaluator is used). `individual` and
    `base` default to the evaluator's recorded scores when it has them (the zoo's manifest),
    otherwise those columns are NaN.
    """
    get_model = getattr(model_for, "model_for", model_for)
    if isinstance(evaluator, Zoo):
        evaluator = ZooEvaluator(evaluator)
    if tasks is None:
        tasks = list(getattr(evaluator, "tasks", []))
    if not tasks:
        raise EvaluationError("no tasks to evaluate; pass tasks=[...]")
    individual = individual if individual is not None else _recorded(evaluator, "individual")
    base = base if base is not None else _recorded(evaluator, "base")
    rows = []
    for index, task in enumerate(tasks):
        if progress is not None:
            progress(index / len(tasks), f"evaluating {task}")
        for metric, merged in evaluator.evaluate(task, get_model(task)).items():
            reference = individual.get(task, {}).get(metric, math.nan)
            rows.append(
                {
                    "task": task,
                    "metric": metric,
                    "merged": merged,
                    "individual": reference,
                    "base": base.get(task, {}).get(metric, math.nan),
                    "normalized": merged / reference if reference else math.nan,
                }
            )
    if progress is not None:
        progress(1.0, "evaluation done")
    return pd.DataFrame(rows, columns=COLUMNS)


def _recorded(evaluator: Any, which: str) -> Scores:
    scores = getattr(evaluator, f"{which}_scores", None)
    return scores() if callable(scores) else {}

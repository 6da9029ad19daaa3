"""One task of a zoo build: probe, fine-tune and score it, then write its files.

Write order (see build.py): the fine-tuned backbone `tasks/<task>/` and the heads file, each
atomically, then `data/<task>/` (test set + task.json) renamed into place last: a task is
finished exactly when its `task.json` exists.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tadrop.io import save_state_dict
from tadrop.io.atomic import atomic_dir
from tadrop.zoo.backbones import Backbone
from tadrop.zoo.datasets import LabelledData, balanced_split
from tadrop.zoo.eval_sets import eval_file_name, write_eval_set
from tadrop.zoo.manifest import TASK_RECORD_NAME, file_record, file_records
from tadrop.zoo.recipes import Recipe, TaskSpec
from tadrop.zoo.training import (
    TrainingCheckpoint,
    accuracy,
    extract_features,
    finetune,
    fit_linear_probe,
    predict,
)


@dataclass
class TrainedTask:
    train: LabelledData
    test: LabelledData
    probe: torch.nn.Linear  # linear probe on the frozen base features (the base model's head)
    head: torch.nn.Linear  # head fine-tuned together with the backbone
    base_accuracy: float
    finetuned_accuracy: float
    losses: list[float]


def train_task(
    spec: TaskSpec,
    recipe: Recipe,
    backbone: Backbone,
    module: torch.nn.Module,
    base_state: dict[str, torch.Tensor],
    seed: int,
    report: Callable[[float, str], None],
    checkpoint: TrainingCheckpoint | None = None,
) -> TrainedTask:
    """Split the task's data, fit the probe on the base model, then fine-tune `module` in place
    (resuming from `checkpoint` when it holds a matching state)."""
    report(0.0, "reading data")
    train, test = balanced_split(spec.read(), recipe.n_train, recipe.n_test, seed)
    train_encoded, test_encoded = backbone.encode(train), backbone.encode(test)

    report(0.05, "linear probe on base features")
    module.load_state_dict(base_state)
    train_features = extract_features(backbone, module, train_encoded)
    probe = fit_linear_probe(
        train_features, train_encoded.labels, len(train.label_names), seed=seed
    )
    with torch.inference_mode():
        test_logits = probe(extract_features(backbone, module, test_encoded))
    base_accuracy = accuracy(test_logits.argmax(dim=1), test_encoded.labels)

    settings = recipe.finetune_for(spec.name)
    head = copy.deepcopy(probe)  # LP-FT: the fine-tuned head starts at the probe
    if settings.head_init == "zero":
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)

    def on_step(step: int, total: int, loss: float) -> None:
        report(0.15 + 0.8 * step / total, f"fine-tuning step {step}/{total}, loss {loss:.3f}")

    losses = finetune(
        backbone, module, head, train_encoded, settings,
        seed=seed, on_step=on_step, checkpoint=checkpoint,
    )  # fmt: skip
    predictions = predict(backbone, module, head, test_encoded)
    return TrainedTask(
        train, test, probe, head, base_accuracy, accuracy(predictions, test_encoded.labels), losses
    )


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def write_task_files(
    root: Path,
    name: str,
    zoo_name: str,
    backbone: Backbone,
    module: torch.nn.Module,
    trained: TrainedTask,
) -> dict[str, Any]:
    """Write the fine-tuned backbone and the heads; return where they are, with file records."""
    metadata = {"tadrop_zoo": zoo_name, "task": name}
    model_dir = backbone.save(module, root / "tasks" / name, metadata)
    heads = {
        "weight": trained.head.weight, "bias": trained.head.bias,
        "base_probe.weight": trained.probe.weight, "base_probe.bias": trained.probe.bias,
    }  # fmt: skip
    head_file = save_state_dict(
        {key: tensor.detach().clone().contiguous() for key, tensor in heads.items()},
        root / "heads" / f"{name}.safetensors",
        metadata={**metadata, "label_names": list(trained.train.label_names)},
    )
    eval_file = root / "data" / name / eval_file_name(trained.test)
    return {
        "model_dir": model_dir.relative_to(root).as_posix(),
        "head_file": head_file.relative_to(root).as_posix(),
        "eval_file": eval_file.relative_to(root).as_posix(),
        "files": file_records(root, [*files_under(model_dir), head_file]),
    }


def commit_task(root: Path, name: str, test: LabelledData, record: dict[str, Any]) -> None:
    """Write data/<task>/ (test set + task.json) under a temporary name, then rename it."""
    data_dir = root / "data" / name
    with atomic_dir(data_dir, overwrite=True) as temp_dir:
        eval_path = temp_dir / eval_file_name(test)
        write_eval_set(eval_path, test)
        record["files"][record["eval_file"]] = file_record(eval_path)
        (temp_dir / TASK_RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")

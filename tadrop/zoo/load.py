"""Where zoos live on disk and how a built zoo is opened (checked against its manifest)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from tadrop.zoo.backbone_image import ImageBackbone
from tadrop.zoo.backbone_text import TextBackbone
from tadrop.zoo.backbones import Backbone
from tadrop.zoo.datasets import LabelledData
from tadrop.zoo.errors import ZooError
from tadrop.zoo.eval_sets import read_eval_set
from tadrop.zoo.manifest import MANIFEST_NAME, check_manifest, read_json
from tadrop.zoo.recipes import recipe_for

HOME_ENV = "TADROP_HOME"
DEFAULT_HOME = Path("~/.cache/tadrop")
HEAD_KEYS = {"finetuned": ("weight", "bias"), "base": ("base_probe.weight", "base_probe.bias")}


def tadrop_home(home: str | os.PathLike | None = None) -> Path:
    """`home`, else $TADROP_HOME, else ~/.cache/tadrop."""
    chosen = home if home is not None else os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(chosen).expanduser()


def zoo_path(zoo: str = "text", size: str = "quick", home: str | os.PathLike | None = None) -> Path:
    """The folder of one zoo: `<home>/zoo/<zoo>-<size>/` (it may not be built yet)."""
    recipe_for(zoo, size)  # validates the names
    return tadrop_home(home) / "zoo" / f"{zoo}-{size}"


def rebuild_hint(zoo: str, size: str) -> str:
    return f"Build it with: tadrop demo build --zoo {zoo} --size {size}"


@dataclass(frozen=True)
class Zoo:
    """A built zoo: a base model, one fine-tuned backbone per task, task heads and eval sets.

    `heads[task]` holds two linear heads on the backbone's features: `weight`/`bias`, the head
    fine-tuned with the task's backbone (used for fine-tuned and merged models), and
    `base_probe.weight`/`base_probe.bias`, a linear probe on the frozen base features (used to
    score the base model).
    """

    root: Path
    zoo: str  # "text" or "image"
    size: str  # "quick" or "full"
    base_dir: Path
    task_dirs: dict[str, Path]
    heads: dict[str, Path]
    eval_sets: dict[str, Path]
    manifest: dict[str, Any]

    @property
    def tasks(self) -> list[str]:
        return list(self.task_dirs)

    def label_names(self, task: str) -> list[str]:
        return list(self._task_record(task)["label_names"])

    def individual_scores(self) -> dict[str, dict[str, float]]:
        """Accuracy of each fine-tuned model on its own task, measured at build time."""
        return {t: {"accuracy": self._task_record(t)["accuracy"]["finetuned"]} for t in self.tasks}

    def base_scores(self) -> dict[str, dict[str, float]]:
        """Accuracy of the base model with each task's linear probe, measured at build time."""
        return {t: {"accuracy": self._task_record(t)["accuracy"]["base"]} for t in self.tasks}

    def backbone(self) -> Backbone:
        """The backbone adapter this zoo was built with (tokenizer read from base/)."""
        recipe = self.manifest["recipe"]
        if self.zoo == "text":
            return TextBackbone(recipe["max_length"], tokenizer_dir=self.base_dir)
        return ImageBackbone(recipe["image_size"])

    def load_head(self, task: str, which: str = "finetuned") -> torch.nn.Linear:
        """The task's `finetuned` head or its `base` linear probe, as an nn.Linear."""
        if which not in HEAD_KEYS:
            raise ZooError(f"head {which!r} unknown; choose one of {', '.join(HEAD_KEYS)}")
        tensors = safetensors.torch.load_file(str(self.heads[self._known(task)]))
        weight, bias = (tensors[key] for key in HEAD_KEYS[which])
        head = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        return head.eval()

    def load_eval_set(self, task: str) -> LabelledData:
        """The task's held-out examples (never used for training or probing)."""
        return read_eval_set(self.eval_sets[self._known(task)], tuple(self.label_names(task)))

    def _known(self, task: str) -> str:
        if task not in self.task_dirs:
            raise ZooError(f"{self.root}: no task {task!r}; tasks: {', '.join(self.tasks)}")
        return task

    def _task_record(self, task: str) -> dict[str, Any]:
        return self.manifest["tasks"][self._known(task)]


def open_zoo_folder(root: Path, *, verify_hashes: bool = False) -> Zoo:
    """Open the zoo at `root`; CorruptZooError if its manifest is missing or a file is damaged."""
    manifest_path = root / MANIFEST_NAME
    name = root.name.split("-", 1)
    hint = rebuild_hint(*name) if len(name) == 2 else "Rebuild it with build_zoo()."
    manifest = read_json(manifest_path, hint)
    check_manifest(root, manifest, hashes=verify_hashes, rebuild_hint=hint)
    return zoo_from_manifest(root, manifest)


def zoo_from_manifest(root: Path, manifest: dict[str, Any]) -> Zoo:
    """The Zoo a (checked) manifest describes."""
    tasks = manifest["tasks"]
    return Zoo(
        root=root,
        zoo=manifest["zoo"],
        size=manifest["size"],
        base_dir=root / "base",
        task_dirs={task: root / record["model_dir"] for task, record in tasks.items()},
        heads={task: root / record["head_file"] for task, record in tasks.items()},
        eval_sets={task: root / record["eval_file"] for task, record in tasks.items()},
        manifest=manifest,
    )


def load_zoo(
    zoo: str = "text",
    size: str = "quick",
    home: str | os.PathLike | None = None,
    *,
    verify_hashes: bool = False,
) -> Zoo:
    """Open a built zoo, checking every file's size (and sha256 with `verify_hashes`)."""
    return open_zoo_folder(zoo_path(zoo, size, home), verify_hashes=verify_hashes)

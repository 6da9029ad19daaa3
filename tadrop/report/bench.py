"""A demo zoo as the report's ``Bench``: its model family, and accuracy on two disjoint halves
of each task's held-out set.

The zoo keeps one held-out set per task and no validation set, so the report splits it with a
fixed seed: the ``validation`` half chooses hyper-parameters (lambda), the ``test`` half gives
every number in the tables (base and individual models included). Scoring goes through
``tadrop.evaluate.ZooEvaluator`` on a view of the zoo whose held-out sets are one half; the
base model is scored with each task's linear probe, every other model with the fine-tuned head.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tadrop.evaluate import ZooEvaluator
from tadrop.report.experiments import ModelFor, Settings
from tadrop.task_vectors import ModelFamily, load_family
from tadrop.zoo import Zoo
from tadrop.zoo.datasets import LabelledData

SPLITS = ("validation", "test")
SPLIT_SEED = 12345


def split_indices(
    n_examples: int, seed: int = SPLIT_SEED, limit: int | None = None
) -> dict[str, np.ndarray]:
    """Two disjoint, sorted halves of range(n): validation gets floor(n/2), test the rest;
    each cut to its first ``limit`` examples (in shuffled order) when given."""
    order = np.random.default_rng(seed).permutation(n_examples)
    half = n_examples // 2
    validation, test = order[:half], order[half:]
    if limit is not None:
        validation, test = validation[:limit], test[:limit]
    return {"validation": np.sort(validation), "test": np.sort(test)}


class ZooHalf:
    """A Zoo whose held-out sets are one half, and whose heads may all be the base probes."""

    def __init__(
        self, zoo: Zoo, split: str, head: str = "finetuned", limit: int | None = None
    ) -> None:
        self._zoo = zoo
        self._split = split
        self._head = head
        self._limit = limit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._zoo, name)

    def load_eval_set(self, task: str) -> LabelledData:
        data = self._zoo.load_eval_set(task)
        return data.subset(split_indices(len(data), limit=self._limit)[self._split])

    def load_head(self, task: str, which: str = "finetuned"):
        return self._zoo.load_head(task, self._head)


class ZooBench:
    """The report's view of one demo zoo (see the module docstring)."""

    def __init__(self, zoo: Zoo, family: ModelFamily, max_examples: int | None = None) -> None:
        self.zoo_object = zoo
        self.zoo = zoo.zoo
        self.size = zoo.size
        self.family = family
        self._evaluators = {
            split: ZooEvaluator(ZooHalf(zoo, split, limit=max_examples)) for split in SPLITS
        }
        self._base_evaluator = ZooEvaluator(ZooHalf(zoo, "test", head="base", limit=max_examples))
        self.description = describe(zoo, family, max_examples)

    def accuracy(self, model_for: ModelFor, split: str) -> dict[str, float]:
        evaluator = self._evaluators[split]
        return {
            task: evaluator.evaluate(task, model_for(task))["accuracy"]
            for task in self.family.task_names
        }

    def base_accuracy(self) -> dict[str, float]:
        """The pre-trained backbone with each task's linear probe, on the test half."""
        state = {name: self.family.base.get(name) for name in self.family.base.keys()}
        return {
            task: self._base_evaluator.evaluate(task, state)["accuracy"]
            for task in self.family.task_names
        }


def describe(zoo: Zoo, family: ModelFamily, max_examples: int | None = None) -> dict[str, Any]:
    manifest = zoo.manifest
    recipe = manifest.get("recipe", {})
    sizes = {task: len(zoo.load_eval_set(task)) for task in family.task_names}
    halves = {
        task: {split: len(index) for split, index in split_indices(n, limit=max_examples).items()}
        for task, n in sizes.items()
    }
    backbone = manifest.get("backbone", {})
    quick_skipped = sum(reason.startswith("quick report") for reason in family.skipped.values())
    return {
        "zoo folder": str(zoo.root),
        "backbone": backbone.get("name") or backbone or recipe.get("zoo"),
        "tasks": ", ".join(family.task_names)
        + (
            ""
            if len(family.task_names) == len(zoo.tasks)
            else f" (the first {len(family.task_names)} of {len(zoo.tasks)})"
        ),
        "merged tensors / parameters": f"{len(family.tensor_names)} / {family.total_params:,}"
        + (
            f" ({quick_skipped} earlier tensors left at the base: quick size)"
            if quick_skipped
            else ""
        ),
        "training examples per task": recipe.get("n_train"),
        "held-out examples per task (validation / test halves)": "; ".join(
            f"{t}: {h['validation']}/{h['test']}" for t, h in halves.items()
        ),
        "fine-tuning": recipe.get("finetune"),
        "zoo build seconds": (manifest.get("build_seconds") or {}).get("tasks_total"),
    }


def open_bench(
    zoo: str, size: str, settings: Settings, *, log: Callable[[str], None] = print
) -> ZooBench:
    """Load (building first if absent) the demo zoo and wrap it as a Bench (see ``bench_of``)."""
    from tadrop.experiments.zoo_numbers import zoo_numbers
    from tadrop.zoo import ZooError, build_zoo, load_zoo

    try:
        loaded = load_zoo(zoo, size)
    except ZooError:
        log(f"building the {size} {zoo} demo zoo (first use)...")
        build_zoo(
            zoo,
            size,
            progress=lambda fraction, message: log(f"  {fraction:4.0%} {message}"),
            measure=zoo_numbers,
        )
        loaded = load_zoo(zoo, size)
    return bench_of(loaded, settings)


def bench_of(zoo: Zoo, settings: Settings) -> ZooBench:
    """The Bench of a loaded zoo: its first ``settings.max_tasks`` tasks, the last
    ``settings.merge_fraction`` of its tensors merged (the rest stay at the base), scored on at
    most ``settings.max_examples`` examples per split and task (None: everything)."""
    tasks = zoo.tasks[: settings.max_tasks] if settings.max_tasks else zoo.tasks
    family = load_family(zoo.base_dir, {task: zoo.task_dirs[task] for task in tasks})
    if settings.merge_fraction is not None:
        count = max(1, round(settings.merge_fraction * len(family.tensor_names)))
        for name in family.tensor_names[:-count]:
            family.skipped[name] = "quick report: only the last tensors are merged"
        family.tensor_names = family.tensor_names[-count:]
    return ZooBench(zoo, family, settings.max_examples)

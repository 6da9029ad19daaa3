"""Build a demo zoo: fine-tune a pretrained backbone on each task and write it all to disk.

Layout of `<home>/zoo/<zoo>-<size>/`:
    base/                     pretrained backbone (Hugging Face style: config, safetensors, ...)
    tasks/<task>/             fine-tuned backbone, same layout and tensor names as base/
    heads/<task>.safetensors  task head `weight`/`bias` + linear probe `base_probe.*`
    data/<task>/              held-out test set (test.jsonl or test.npz) and task.json
    manifest.json             recipe, versions, accuracies, file sizes and sha256; written last

Each piece is written under a hidden temporary name and renamed when complete; a task's
`task.json` is renamed into place after its model and head, and the manifest after every
task. An interrupted build therefore leaves no manifest (load_zoo refuses the folder) and
no half-written file under a final name; the next build keeps the finished tasks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from tadrop.io.atomic import remove_path
from tadrop.zoo.backbones import Backbone
from tadrop.zoo.errors import CorruptZooError
from tadrop.zoo.load import open_zoo_folder, zoo_from_manifest, zoo_path
from tadrop.zoo.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    TASK_RECORD_NAME,
    file_problems,
    file_records,
    write_json,
)
from tadrop.zoo.recipes import Recipe, TaskSpec, compact, recipe_for
from tadrop.zoo.sources import source_versions
from tadrop.zoo.task_build import commit_task, files_under, train_task, write_task_files
from tadrop.zoo.training import TrainingCheckpoint

THREADS_ENV = "TADROP_BUILD_THREADS"
PARTIAL_DIR = "partial"  # mid-task training checkpoints: partial/<task>.pt, removed when done
CHECKPOINT_EVERY = 16  # optimiser steps between two training checkpoints
ProgressCallback = Callable[[float, str], None]
ZooMeasure = Callable[[Any], dict[str, Any]]  # built Zoo -> extra manifest entries
log = logging.getLogger("tadrop.zoo")


def build_zoo(
    zoo: str = "text",
    size: str = "quick",
    home: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
    *,
    verify_hashes: bool = False,
    threads: int | None = None,
    measure: ZooMeasure | None = None,
) -> Path:
    """Build (or finish, or repair) a zoo and return its folder; a no-op if it is intact.

    `progress(fraction, message)` is called as the build advances (fraction in [0, 1]; the
    message says "task k of n" and the time left); raising from it cancels the build, keeping
    the tasks already finished and a training checkpoint of the current one (saved every
    CHECKPOINT_EVERY steps), from which the next build resumes. `force` rebuilds everything.
    `verify_hashes` also checks the sha256 of existing files before trusting them. `threads`:
    torch threads while building (default: $TADROP_BUILD_THREADS, else every core).
    `measure(zoo)` adds numbers to the manifest of a recipe with a summary (the callers pass
    `tadrop.experiments.zoo_numbers.zoo_numbers`: heterogeneity of d and merge contrast); the
    zoo package itself runs no statistics or merges (layers: docs/ARCHITECTURE.md).
    """
    count = build_threads(threads)
    recipe = recipe_for(zoo, size)
    root = zoo_path(zoo, size, home)
    report = progress or (lambda fraction, message: None)
    if not force and _is_current(root, recipe, verify_hashes):
        report(1.0, f"{zoo}-{size} zoo already built at {root}")
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    # One build of a zoo at a time (the dashboard and the command line may both ask).
    with FileLock(root.parent / f".{root.name}.lock"):
        if force:
            shutil.rmtree(root, ignore_errors=True)
        elif _is_current(root, recipe, verify_hashes):  # another process just finished it
            report(1.0, f"{zoo}-{size} zoo already built at {root}")
            return root
        _remove_leftovers(root)
        with _torch_threads(count):
            _ZooBuild(recipe, root, report, verify_hashes, count, measure).run()
    return root


def build_threads(threads: int | None = None) -> int:
    """`threads`, else $TADROP_BUILD_THREADS, else the cores this process may use."""
    if threads is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        if not text:
            return len(os.sched_getaffinity(0))
        try:
            threads = int(text)
        except ValueError:
            threads = 0
        where = f"${THREADS_ENV}={text!r}"
    else:
        where = f"threads={threads!r}"
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{where}: the build's torch threads must be a whole number >= 1.")
    return threads


def is_built(
    zoo: str = "text",
    size: str = "quick",
    home: str | os.PathLike | None = None,
    *,
    verify_hashes: bool = False,
) -> bool:
    """True when the zoo is complete, intact and built with this tadrop's recipe."""
    return _is_current(zoo_path(zoo, size, home), recipe_for(zoo, size), verify_hashes)


def _is_current(root: Path, recipe: Recipe, verify_hashes: bool) -> bool:
    try:
        zoo = open_zoo_folder(root, verify_hashes=verify_hashes)
    except CorruptZooError:
        return False
    revisions = {task: record.get("revision") for task, record in zoo.manifest["tasks"].items()}
    wanted = {spec.name: spec.revision for spec in recipe.task_specs()}
    stored = compact(zoo.manifest.get("recipe") or {})
    return stored == recipe.to_json() and revisions == wanted


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _remove_leftovers(root: Path) -> None:
    """Drop the manifest (the zoo is being changed) and temporary names of killed builds."""
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    for folder in (root, root / "tasks", root / "heads", root / "data"):
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name.startswith("."):  # only temporary siblings are hidden here
                    remove_path(entry)
    partial = root / PARTIAL_DIR
    if partial.is_dir():
        for entry in partial.iterdir():
            if entry.name.startswith("."):  # a checkpoint killed while being written
                remove_path(entry)


def task_seed(seed: int, task: str) -> int:
    """A per-task seed that does not depend on which other tasks are built."""
    return zlib.crc32(f"{seed}:{task}".encode())


class _ZooBuild:
    """One run of a build: the shared backbone module and the per-task steps."""

    def __init__(
        self, recipe: Recipe, root: Path, report: ProgressCallback, verify_hashes: bool,
        threads: int, measure: ZooMeasure | None = None,
    ) -> None:  # fmt: skip
        self.threads = threads
        self.measure = measure
        self.recipe = recipe
        self.root = root
        self.report = report
        self.verify_hashes = verify_hashes
        self.specs = recipe.task_specs()

    def run(self) -> None:
        started = time.perf_counter()
        backbone = self.recipe.backbone()
        self.report(0.0, f"writing the base model to {self.root / 'base'}")
        module = backbone.load_pretrained()
        base_state = {name: t.detach().clone() for name, t in module.state_dict().items()}
        metadata = {"tadrop_zoo": f"{self.recipe.zoo}-{self.recipe.size}", "role": "base"}
        base_dir = backbone.save(module, self.root / "base", metadata)
        records = {spec.name: self._finished_record(spec.name) for spec in self.specs}
        eta = _TimeLeft()
        for index, spec in enumerate(self.specs):
            if records[spec.name] is None:
                records[spec.name] = self._build_task(
                    index, spec, backbone, module, base_state, eta
                )
        if self.recipe.summary:
            self.report(0.99, "measuring heterogeneity and merges for the manifest")
        self._write_manifest(base_dir, records, time.perf_counter() - started)
        remove_path(self.root / PARTIAL_DIR)
        self.report(1.0, f"{self.recipe.zoo}-{self.recipe.size} zoo built at {self.root}")

    def _finished_record(self, task: str) -> dict[str, Any] | None:
        """The task's record if an earlier build finished it with this recipe and it is intact."""
        try:
            record = json.loads((self.root / "data" / task / TASK_RECORD_NAME).read_text())
        except (OSError, ValueError):
            return None
        spec = next(spec for spec in self.specs if spec.name == task)
        stored = compact(record.get("recipe") or {})
        if stored != self.recipe.task_json(task) or record.get("revision") != spec.revision:
            return None
        if file_problems(self.root, record.get("files", {}), hashes=self.verify_hashes):
            return None
        log.info("%s: already built, kept", task)
        return record

    def _build_task(
        self,
        index: int,
        spec: TaskSpec,
        backbone: Backbone,
        module: torch.nn.Module,
        base_state: dict[str, torch.Tensor],
        eta: _TimeLeft,
    ) -> dict[str, Any]:
        started = time.perf_counter()
        seed = task_seed(self.recipe.seed, spec.name)
        n = len(self.specs)

        def report(within: float, message: str) -> None:
            fraction = (index + within) / n
            left = eta.update(fraction)
            self.report(fraction, f"task {index + 1} of {n} ({spec.name}): {message}{left}")

        key = json.dumps({"task": spec.name, "revision": spec.revision, "seed": seed,
                          "recipe": self.recipe.task_json(spec.name)}, sort_keys=True)  # fmt: skip
        checkpoint = TrainingCheckpoint(
            self.root / PARTIAL_DIR / f"{spec.name}.pt", key, CHECKPOINT_EVERY
        )
        trained = train_task(
            spec, self.recipe, backbone, module, base_state, seed, report, checkpoint
        )
        report(0.97, "writing")
        record = {
            "task": spec.name,
            "source": spec.source,
            "revision": spec.revision,
            "label_names": list(trained.train.label_names),
            "n_train": len(trained.train),
            "n_test": len(trained.test),
            "train_class_counts": trained.train.class_counts(),
            "test_class_counts": trained.test.class_counts(),
            "seed": seed,
            "accuracy": {"finetuned": trained.finetuned_accuracy, "base": trained.base_accuracy},
            "base_method": "linear probe on frozen base features",
            "train_loss": {
                "first": trained.losses[0],
                "last": float(np.mean(trained.losses[-10:])),
            },
            "recipe": self.recipe.task_json(spec.name),
        }
        zoo_name = f"{self.recipe.zoo}-{self.recipe.size}"
        record.update(write_task_files(self.root, spec.name, zoo_name, backbone, module, trained))
        record["build_seconds"] = round(time.perf_counter() - started, 2)
        commit_task(self.root, spec.name, trained.test, record)
        checkpoint.remove()
        log.info(
            "%s: base %.3f, fine-tuned %.3f (%.1f s)",
            spec.name, trained.base_accuracy, trained.finetuned_accuracy, record["build_seconds"],
        )  # fmt: skip
        return record

    def _write_manifest(
        self, base_dir: Path, records: dict[str, dict[str, Any]], seconds: float
    ) -> None:
        recipe = self.recipe
        manifest = {
            "format_version": FORMAT_VERSION,
            "zoo": recipe.zoo,
            "size": recipe.size,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "recipe": recipe.to_json(),
            "backbone": _backbone_summary(base_dir),
            "versions": source_versions(),
            "threads": self.threads,
            "build_seconds": {
                "this_run": round(seconds, 2),
                "tasks_total": round(sum(r["build_seconds"] for r in records.values()), 2),
            },
            "base": {"dir": "base", "files": file_records(self.root, files_under(base_dir))},
            "tasks": records,
        }
        if recipe.summary and self.measure is not None:
            manifest.update(self.measure(zoo_from_manifest(self.root, manifest)))
        write_json(self.root / MANIFEST_NAME, manifest)


class _TimeLeft:
    """Time left, from the pace since the first report of this run (finished tasks skipped)."""

    def __init__(self) -> None:
        self.start: tuple[float, float] | None = None  # (fraction, time) of the first report

    def update(self, fraction: float) -> str:
        now = time.monotonic()
        if self.start is None:
            self.start = (fraction, now)
        done, elapsed = fraction - self.start[0], now - self.start[1]
        if done <= 0.005 or elapsed < 2:
            return ""
        seconds = elapsed * (1 - fraction) / done
        return f", about {format_duration(seconds)} left"


def format_duration(seconds: float) -> str:
    """ "45 s", "3 min", "1 h 05 min"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _backbone_summary(base_dir: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(base_dir / "model.safetensors"), "pt") as weights:
        names = list(weights.keys())
        numel = sum(int(np.prod(weights.get_slice(n).get_shape())) for n in names)
    config = json.loads((base_dir / "config.json").read_text())
    return {"model_type": config.get("model_type"), "tensors": len(names), "numel": numel}

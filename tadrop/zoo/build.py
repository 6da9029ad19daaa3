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
import copy
import fcntl
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
from tqdm.auto import tqdm

from tadrop.io import save_state_dict
from tadrop.io.atomic import remove_path, replace_dir, temp_sibling
from tadrop.zoo.backbones import Backbone
from tadrop.zoo.datasets import LabelledData, balanced_split
from tadrop.zoo.errors import CorruptZooError
from tadrop.zoo.eval_sets import eval_file_name, write_eval_set
from tadrop.zoo.load import open_zoo_folder, zoo_path
from tadrop.zoo.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    TASK_RECORD_NAME,
    file_problems,
    file_record,
    file_records,
    write_json,
)
from tadrop.zoo.recipes import Recipe, TaskSpec, recipe_for
from tadrop.zoo.sources import source_versions
from tadrop.zoo.training import accuracy, extract_features, finetune, fit_linear_probe, predict

BUILD_THREADS = 2
ProgressCallback = Callable[[float, str], None]
log = logging.getLogger("tadrop.zoo")


def build_zoo(
    zoo: str = "text",
    size: str = "quick",
    home: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
    *,
    verify_hashes: bool = False,
) -> Path:
    """Build (or finish, or repair) a zoo and return its folder; a no-op if it is intact.

    `progress(fraction, message)` is called as the build advances (fraction in [0, 1]); raising
    from it cancels the build, keeping the tasks already finished. `force` rebuilds everything.
    `verify_hashes` also checks the sha256 of existing files before trusting them.
    """
    recipe = recipe_for(zoo, size)
    root = zoo_path(zoo, size, home)
    report = progress or (lambda fraction, message: None)
    if not force and _is_current(root, recipe, verify_hashes):
        report(1.0, f"{zoo}-{size} zoo already built at {root}")
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root.parent / f".{root.name}.lock"):
        if force:
            shutil.rmtree(root, ignore_errors=True)
        elif _is_current(root, recipe, verify_hashes):  # another process just finished it
            report(1.0, f"{zoo}-{size} zoo already built at {root}")
            return root
        _remove_leftovers(root)
        with _torch_threads(BUILD_THREADS):
            _ZooBuild(recipe, root, report, verify_hashes).run()
    return root


def _is_current(root: Path, recipe: Recipe, verify_hashes: bool) -> bool:
    try:
        zoo = open_zoo_folder(root, verify_hashes=verify_hashes)
    except CorruptZooError:
        return False
    return zoo.manifest.get("recipe") == recipe.to_json()


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """One build of a zoo at a time (the dashboard and the command line may both ask)."""
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


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


def task_seed(seed: int, task: str) -> int:
    """A per-task seed that does not depend on which other tasks are built."""
    return zlib.crc32(f"{seed}:{task}".encode())


class _ZooBuild:
    """One run of a build: the shared backbone module and the per-task steps."""

    def __init__(
        self, recipe: Recipe, root: Path, report: ProgressCallback, verify_hashes: bool
    ) -> None:
        self.recipe = recipe
        self.root = root
        self.report = report
        self.verify_hashes = verify_hashes
        self.specs = recipe.task_specs()
        # Everything except the task list decides a task's result; adding a task keeps others.
        self.task_recipe = {k: v for k, v in recipe.to_json().items() if k != "tasks"}

    def run(self) -> None:
        started = time.perf_counter()
        backbone = self.recipe.backbone()
        self.report(0.0, f"writing the base model to {self.root / 'base'}")
        module = backbone.load_pretrained()
        base_state = {name: t.detach().clone() for name, t in module.state_dict().items()}
        metadata = {"tadrop_zoo": f"{self.recipe.zoo}-{self.recipe.size}", "role": "base"}
        base_dir = backbone.save(module, self.root / "base", metadata)
        records = {}
        with tqdm(total=len(self.specs), desc=f"{self.recipe.zoo} zoo", unit="task") as bar:
            for index, spec in enumerate(self.specs):
                record = self._finished_record(spec.name)
                if record is None:
                    record = self._build_task(index, spec, backbone, module, base_state)
                records[spec.name] = record
                bar.update(1)
        self._write_manifest(base_dir, records, time.perf_counter() - started)
        self.report(1.0, f"{self.recipe.zoo}-{self.recipe.size} zoo built at {self.root}")

    def _finished_record(self, task: str) -> dict[str, Any] | None:
        """The task's record if an earlier build finished it with this recipe and it is intact."""
        try:
            record = json.loads((self.root / "data" / task / TASK_RECORD_NAME).read_text())
        except (OSError, ValueError):
            return None
        if record.get("recipe") != self.task_recipe:
            return None
        if file_problems(self.root, record.get("files", {}), hashes=self.verify_hashes):
            return None
        log.info("%s: already built, kept", task)
        return record

    def _task_progress(self, index: int, within: float, message: str) -> None:
        self.report((index + within) / len(self.specs), message)

    def _build_task(
        self,
        index: int,
        spec: TaskSpec,
        backbone: Backbone,
        module: torch.nn.Module,
        base_state: dict[str, torch.Tensor],
    ) -> dict[str, Any]:
        started = time.perf_counter()
        recipe, name = self.recipe, spec.name
        seed = task_seed(recipe.seed, name)
        self._task_progress(index, 0.0, f"{name}: reading data")
        train, test = balanced_split(spec.read(), recipe.n_train, recipe.n_test, seed)
        train_encoded, test_encoded = backbone.encode(train), backbone.encode(test)
        n_classes = len(train.label_names)

        self._task_progress(index, 0.05, f"{name}: linear probe on base features")
        module.load_state_dict(base_state)
        train_features = extract_features(backbone, module, train_encoded)
        probe = fit_linear_probe(train_features, train_encoded.labels, n_classes, seed=seed)
        with torch.inference_mode():
            test_logits = probe(extract_features(backbone, module, test_encoded))
        base_accuracy = accuracy(test_logits.argmax(dim=1), test_encoded.labels)

        head = copy.deepcopy(probe)  # LP-FT: the fine-tuned head starts at the probe
        with tqdm(desc=f"  {name}", unit="step", leave=False) as bar:

            def on_step(step: int, total: int, loss: float) -> None:
                bar.total = total
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                fraction = 0.15 + 0.8 * step / total
                self._task_progress(index, fraction, f"{name}: fine-tuning step {step}/{total}")

            losses = finetune(
                backbone, module, head, train_encoded, recipe.finetune, seed=seed, on_step=on_step
            )
        finetuned_accuracy = accuracy(
            predict(backbone, module, head, test_encoded), test_encoded.labels
        )

        self._task_progress(index, 0.97, f"{name}: writing")
        record = {
            "task": name,
            "source": spec.source,
            "label_names": list(train.label_names),
            "n_train": len(train),
            "n_test": len(test),
            "train_class_counts": train.class_counts(),
            "test_class_counts": test.class_counts(),
            "seed": seed,
            "accuracy": {"finetuned": finetuned_accuracy, "base": base_accuracy},
            "base_method": "linear probe on frozen base features",
            "train_loss": {"first": losses[0], "last": float(np.mean(losses[-10:]))},
            "build_seconds": 0.0,
            "recipe": self.task_recipe,
        }
        record.update(self._write_task(spec, backbone, module, head, probe, test, record))
        record["build_seconds"] = round(time.perf_counter() - started, 2)
        self._commit_task(name, test, record)
        log.info(
            "%s: base %.3f, fine-tuned %.3f (%.1f s)",
            name, base_accuracy, finetuned_accuracy, record["build_seconds"],
        )  # fmt: skip
        return record

    def _write_task(
        self,
        spec: TaskSpec,
        backbone: Backbone,
        module: torch.nn.Module,
        head: torch.nn.Linear,
        probe: torch.nn.Linear,
        test: LabelledData,
        record: dict[str, Any],
    ) -> dict[str, Any]:
        """Write the fine-tuned backbone and the heads; return where they are."""
        name = spec.name
        metadata = {"tadrop_zoo": f"{self.recipe.zoo}-{self.recipe.size}", "task": name}
        model_dir = backbone.save(module, self.root / "tasks" / name, metadata)
        heads = {
            "weight": head.weight, "bias": head.bias,
            "base_probe.weight": probe.weight, "base_probe.bias": probe.bias,
        }  # fmt: skip
        head_file = save_state_dict(
            {key: tensor.detach().clone().contiguous() for key, tensor in heads.items()},
            self.root / "heads" / f"{name}.safetensors",
            metadata={**metadata, "label_names": record["label_names"]},
        )
        eval_file = self.root / "data" / name / eval_file_name(test)
        return {
            "model_dir": model_dir.relative_to(self.root).as_posix(),
            "head_file": head_file.relative_to(self.root).as_posix(),
            "eval_file": eval_file.relative_to(self.root).as_posix(),
            "files": file_records(self.root, [*_files_under(model_dir), head_file]),
        }

    def _commit_task(self, name: str, test: LabelledData, record: dict[str, Any]) -> None:
        """Write data/<task>/ (test set + task.json) under a temporary name, then rename it."""
        data_dir = self.root / "data" / name
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        temp_dir = temp_sibling(data_dir, "tadrop-tmp")
        temp_dir.mkdir()
        try:
            eval_path = temp_dir / eval_file_name(test)
            write_eval_set(eval_path, test)
            record["files"][record["eval_file"]] = file_record(eval_path)
            (temp_dir / TASK_RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
            replace_dir(temp_dir, data_dir, overwrite=True)
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise

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
            "threads": BUILD_THREADS,
            "build_seconds": {
                "this_run": round(seconds, 2),
                "tasks_total": round(sum(r["build_seconds"] for r in records.values()), 2),
            },
            "base": {"dir": "base", "files": file_records(self.root, _files_under(base_dir))},
            "tasks": records,
        }
        write_json(self.root / MANIFEST_NAME, manifest)


def _files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def _backbone_summary(base_dir: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(base_dir / "model.safetensors"), "pt") as weights:
        names = list(weights.keys())
        numel = sum(int(np.prod(weights.get_slice(n).get_shape())) for n in names)
    config = json.loads((base_dir / "config.json").read_text())
    return {"model_type": config.get("model_type"), "tensors": len(names), "numel": numel}

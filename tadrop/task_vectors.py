"""A model family (base + K fine-tuned checkpoints) and the lazy walk over its task vectors.

tau_k = theta_k - theta_pre, tensor by tensor. Only one tensor name is in memory at a time:
peak memory is about (K + 2) times the largest tensor in float32, never K whole models.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tadrop.quantiles.buffers import WalkBuffers

from tadrop.io import Checkpoint, CheckpointError, count_nonfinite, open_checkpoint
from tadrop.io import check_finite as _check_finite

KEY_MODES = ("strict", "common")


class FamilyError(ValueError):
    """The checkpoints of a family do not fit together; the message says how to fix it."""


@dataclass
class ModelFamily:
    """A base checkpoint and K fine-tuned checkpoints, matched tensor by tensor."""

    base: Checkpoint
    tasks: dict[str, Checkpoint]
    tensor_names: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    key_map: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> base key -> key
    notes: list[str] = field(default_factory=list)  # warnings a user should see (float dtypes)

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    def numel(self, name: str) -> int:
        numel = 1
        for size in self.base.shape(name):
            numel *= size
        return numel

    @property
    def total_params(self) -> int:
        return sum(self.numel(name) for name in self.tensor_names)

    def get_task_tensor(self, task: str, name: str) -> torch.Tensor:
        return self.tasks[task].get(self.key_map[task][name])

    def summary(self) -> dict[str, object]:
        """Counts a user sees first: tasks, tensors, parameters, dtypes, skipped tensors."""
        dtypes = sorted(
            {str(self.base.dtype(name)).replace("torch.", "") for name in self.tensor_names}
        )
        return {
            "tasks": self.task_names,
            "tensors": len(self.tensor_names),
            "parameters": self.total_params,
            "dtypes": dtypes,
            "skipped": dict(self.skipped),
            "notes": list(self.notes),
        }

    def close(self) -> None:
        for checkpoint in [self.base, *self.tasks.values()]:
            checkpoint.close()


def task_name_problem(task: object) -> str | None:
    """Why ``task`` cannot name a task (it becomes a folder name: EMR writes OUT/<task>/), or
    None. A task name is one safe path component: not empty, not . or .., no / or \\."""
    if not isinstance(task, str) or not task.strip():
        return f"task name {task!r} is empty; name each task (e.g. sst2: path/to/model)"
    if task in (".", "..") or any(char in task for char in "/\\\x00") or Path(task).is_absolute():
        return (
            f"task name {task!r} is not a safe folder name (it would write outside the output "
            "folder); use one path component without / or \\, not . or .."
        )
    return None


def _task_name_for(path: Path, used: set[str]) -> str:
    stem = path.name if path.is_dir() else path.stem
    name, suffix = stem, 2
    while name in used:
        name, suffix = f"{stem}_{suffix}", suffix + 1
    return name


def _as_task_paths(finetuned: Mapping[str, str | Path] | Sequence[str | Path]) -> dict[str, Path]:
    if isinstance(finetuned, Mapping):
        return {str(task): Path(path) for task, path in finetuned.items()}
    task_paths: dict[str, Path] = {}
    for path in finetuned:
        task_paths[_task_name_for(Path(path), set(task_paths))] = Path(path)
    return task_paths


def _prefix_hint(base_keys: set[str], task_keys: set[str]) -> str:
    """Say so when two key sets differ only by a leading prefix such as ``model.``."""
    for key in task_keys:
        if "." not in key:
            continue
        prefix = key.split(".", 1)[0] + "."
        stripped = {k[len(prefix) :] for k in task_keys if k.startswith(prefix)}
        if len(stripped) >= len(task_keys) // 2 and len(stripped & base_keys) >= len(stripped) // 2:
            return f" The fine-tuned keys carry a prefix {prefix!r} that the base lacks: pass align_prefixes=True (CLI: --align-prefixes)."
        prefixed = {prefix + k for k in base_keys}
        if len(prefixed & task_keys) >= len(task_keys) // 2:
            return f" The base keys lack the prefix {prefix!r} that the fine-tuned keys carry: pass align_prefixes=True (CLI: --align-prefixes)."
        break
    return ""


def _align_keys(base_keys: list[str], task_keys: list[str], align_prefixes: bool) -> dict[str, str]:
    """Map each base key to the fine-tuned key holding the same tensor."""
    task_set = set(task_keys)
    mapping = {key: key for key in base_keys if key in task_set}
    if not align_prefixes or len(mapping) == len(base_keys):
        return mapping
    for key in base_keys:
        if key in mapping:
            continue
        candidates = [k for k in task_keys if k.endswith("." + key)]
        candidates += [k for k in task_keys if key.endswith("." + k)]
        if len(candidates) == 1:
            mapping[key] = candidates[0]
    return mapping


def _listing(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_family(
    base: str | Path | Checkpoint,
    finetuned: Mapping[str, str | Path] | Sequence[str | Path],
    *,
    include: str | None = None,
    exclude: str | None = None,
    keys: str = "strict",
    align_prefixes: bool = False,
) -> ModelFamily:
    """Open a base and its fine-tuned checkpoints and match their tensors.

    ``keys="strict"`` refuses missing/extra keys and shape mismatches with a message naming them;
    ``keys="common"`` keeps the tensors every checkpoint has with equal shapes and reports the
    rest in ``skipped``. Non-float tensors (int buffers such as ``position_ids``) are skipped.
    ``include``/``exclude`` are regular expressions matched (``re.search``) against base names.
    """
    if keys not in KEY_MODES:
        raise FamilyError(f"keys={keys!r} is not known; use one of {KEY_MODES}.")
    task_paths = _as_task_paths(finetuned)
    if not task_paths:
        raise FamilyError("No fine-tuned checkpoints given: pass at least one.")
    for task in task_paths:
        problem = task_name_problem(task)
        if problem:
            raise FamilyError(f"{problem}.")
    base_checkpoint = base if isinstance(base, Checkpoint) else open_checkpoint(base)
    selected, skipped = _select(base_checkpoint, include, exclude)
    tasks: dict[str, Checkpoint] = {}
    for task, path in task_paths.items():
        tasks[task] = open_checkpoint(path, base=base_checkpoint)
    key_map = {
        task: _match_task(
            task, checkpoint, base_checkpoint, selected, keys, align_prefixes, skipped
        )
        for task, checkpoint in tasks.items()
    }
    kept = set(selected) - set(skipped)
    tensor_names = [name for name in selected if name in kept]
    if not tensor_names:
        raise FamilyError(
            "No tensor is left to merge: check include/exclude and that the checkpoints belong to one model."
        )
    notes = _tensor_checks(base_checkpoint, tasks, key_map, tensor_names)
    return ModelFamily(base_checkpoint, tasks, tensor_names, skipped, key_map, notes)


def _match_task(
    task: str,
    checkpoint: Checkpoint,
    base: Checkpoint,
    selected: list[str],
    keys: str,
    align_prefixes: bool,
    skipped: dict[str, str],
) -> dict[str, str]:
    """Base name -> this task's name; FamilyError (strict) or ``skipped`` entries (common) for
    tensors the task lacks or holds with another shape."""
    task_keys = checkpoint.keys()
    mapping = _align_keys(base.keys(), task_keys, align_prefixes)
    missing = [name for name in selected if name not in mapping]
    extra = sorted(set(task_keys) - set(mapping.values()))
    mismatched = [
        name
        for name in selected
        if name in mapping and tuple(checkpoint.shape(mapping[name])) != tuple(base.shape(name))
    ]
    if keys == "strict" and (missing or mismatched or extra):
        raise FamilyError(
            _mismatch_message(task, checkpoint, base, missing, extra, mismatched, mapping)
        )
    for name in missing:
        skipped.setdefault(name, f"missing from task {task!r}")
    for name in mismatched:
        shapes = f"{tuple(checkpoint.shape(mapping[name]))} vs base {tuple(base.shape(name))}"
        skipped.setdefault(name, f"shape differs in task {task!r}: {shapes}")
    return mapping


def _tensor_checks(
    base: Checkpoint, tasks: dict[str, Checkpoint], key_map: dict, names: list[str]
) -> list[str]:
    """FamilyError for a tensor that cannot be merged (empty; an integer fine-tuned tensor
    against a float base, whose task vector would be nonsense); notes for float dtypes that
    differ (bf16 vs fp32 merges fine in float32, but the user should know)."""
    notes: dict[tuple[str, str], list[str]] = {}
    for name in names:
        base.check_not_empty(name)  # the file, the tensor and the exclude: that leaves it out
        for task, checkpoint in tasks.items():
            base_dtype, task_dtype = base.dtype(name), checkpoint.dtype(key_map[task][name])
            if not task_dtype.is_floating_point:
                raise FamilyError(
                    f"Tensor {name!r} of task {task!r} ({checkpoint.source}) is {task_dtype}, "
                    f"the base ({base.source}) is {base_dtype}: an integer tensor cannot give a "
                    "task vector. Check that the checkpoint is the fine-tuned model, or exclude "
                    "the tensor with exclude: REGEX (CLI: --exclude)."
                )
            if task_dtype != base_dtype:
                notes.setdefault((str(task_dtype), str(base_dtype)), []).append(f"{task}:{name}")
    return [
        f"{len(where)} fine-tuned tensor(s) are {task_dtype.removeprefix('torch.')} where the "
        f"base is {base_dtype.removeprefix('torch.')} (e.g. {_listing(where, 3)}); they are "
        "merged in float32 and written in the output dtype"
        for (task_dtype, base_dtype), where in notes.items()
    ]


def _select(
    base: Checkpoint, include: str | None, exclude: str | None
) -> tuple[list[str], dict[str, str]]:
    """The base's float tensors that include/exclude keep, and why each other one is skipped."""
    include_re = _compile(include, "include")
    exclude_re = _compile(exclude, "exclude")
    skipped: dict[str, str] = {}
    selected = []
    for name in base.keys():
        if include_re is not None and not include_re.search(name):
            skipped[name] = f"not matched by include {include!r}"
        elif exclude_re is not None and exclude_re.search(name):
            skipped[name] = f"matched by exclude {exclude!r}"
        elif not base.dtype(name).is_floating_point:
            skipped[name] = f"non-float tensor ({base.dtype(name)}), never merged"
        else:
            selected.append(name)
    return selected, skipped


def _compile(pattern: str | None, what: str) -> re.Pattern[str] | None:
    if pattern is None or pattern == "":
        return None
    try:
        return re.compile(pattern)
    except re.error as error:
        raise FamilyError(
            f"The {what} pattern {pattern!r} is not a valid regular expression: {error}."
        ) from None


def _mismatch_message(task, checkpoint, base, missing, extra, mismatched, mapping) -> str:
    parts = [f"Task {task!r} ({checkpoint.source}) does not match the base ({base.source}):"]
    if missing:
        parts.append(f"{len(missing)} base tensor(s) missing: {_listing(missing)}.")
    if extra:
        parts.append(f"{len(extra)} extra tensor(s) not in the base: {_listing(extra)}.")
    if mismatched:
        shapes = [
            f"{n} {tuple(checkpoint.shape(mapping[n]))} vs base {tuple(base.shape(n))}"
            for n in mismatched
        ]
        parts.append(f"{len(mismatched)} shape mismatch(es): {_listing(shapes)}.")
    hint = _prefix_hint(set(base.keys()), set(checkpoint.keys())) if missing else ""
    parts.append(
        hint
        or " Pass keys='common' (CLI: --keys common) to merge only the tensors all checkpoints share, or exclude the odd tensors with exclude=REGEX."
    )
    return " ".join(parts)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' was asked for but no CUDA device is available; use device='auto' or 'cpu'."
        )
    return resolved


@dataclass
class TensorTaskVectors:
    """One tensor of the family: the base in float32 and the K task vectors stacked."""

    name: str
    base: torch.Tensor  # (*shape) float32
    task_vectors: torch.Tensor  # (K, *shape) float32


def iter_task_vectors(
    family: ModelFamily,
    *,
    device: str | torch.device = "auto",
    names: Sequence[str] | None = None,
    check_finite: bool = True,
    buffers: WalkBuffers | None = None,
) -> Iterator[TensorTaskVectors]:
    """Yield the task vectors of each tensor, one tensor name at a time. With ``buffers`` the
    (K, *shape) stack is a reused buffer: each yielded stack is valid only until the next."""
    target = resolve_device(device)
    for name in names if names is not None else family.tensor_names:
        base_tensor = family.base.get(name)
        base32 = base_tensor.to(target, torch.float32)
        shape = (len(family.tasks), *base32.shape)
        if buffers is None:
            stacked = torch.empty(shape, dtype=torch.float32, device=target)
        else:
            stacked = buffers.get("task_vectors", shape, torch.float32, target)
        for index, task in enumerate(family.tasks):
            # tau_k = theta_k - theta_pre in one pass (the float32 promotion happens inside sub).
            torch.sub(family.get_task_tensor(task, name).to(target), base32, out=stacked[index])
        if check_finite and count_nonfinite(stacked):
            _check_inputs_finite(family, name)
        yield TensorTaskVectors(name, base32, stacked)


def _check_inputs_finite(family: ModelFamily, name: str) -> None:
    """CheckpointError naming the first input file whose tensor ``name`` holds NaN or Inf.

    Called only when a task vector holds NaN or Inf (found in one pass over data just written,
    ``count_nonfinite``): a NaN or Inf in the base or in a fine-tuned tensor makes some tau_k
    entry NaN or Inf, so finite task vectors rule out both. Finite inputs whose difference
    overflows float32 pass this exact check, and the merge's own guard decides."""
    _check_finite(name, family.base.get(name), family.base.source)
    for task, checkpoint in family.tasks.items():
        _check_finite(name, family.get_task_tensor(task, name), checkpoint.source)


def base_state(family: ModelFamily) -> dict[str, torch.Tensor]:
    """The pre-trained model's tensors under its own key names."""
    return {name: family.base.get(name) for name in family.base.keys()}


def finetuned_state(family: ModelFamily, task: str) -> dict[str, torch.Tensor]:
    """The fine-tuned checkpoint under the base's key names (unmatched tensors from the base)."""
    key_map = family.key_map[task]
    checkpoint = family.tasks[task]
    return {
        name: checkpoint.get(key_map[name]) if name in key_map else family.base.get(name)
        for name in family.base.keys()
    }


__all__ = [
    "CheckpointError",
    "FamilyError",
    "ModelFamily",
    "TensorTaskVectors",
    "base_state",
    "finetuned_state",
    "iter_task_vectors",
    "load_family",
    "resolve_device",
]

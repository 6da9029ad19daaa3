"""Tiny families for the evaluation tests, written once per test session by the README's
example script (examples/tiny_eval_family.py): a Llama-shaped causal LM and a CLIP model, each
with two fine-tuned tasks and one evaluation file or folder per task."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from tadrop.io import open_checkpoint

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tiny_eval_family.py"


def example_module():
    """examples/tiny_eval_family.py as a module (it is a script, not part of the package)."""
    if "tiny_eval_family" not in sys.modules:
        spec = importlib.util.spec_from_file_location("tiny_eval_family", EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        sys.modules["tiny_eval_family"] = module
        spec.loader.exec_module(module)
    return sys.modules["tiny_eval_family"]


@pytest.fixture(scope="session")
def tiny_families(tmp_path_factory) -> Path:
    """The folder ``python examples/tiny_eval_family.py FOLDER`` writes (lm/ and clip/)."""
    folder = tmp_path_factory.mktemp("tiny_eval_family")
    example_module().main(str(folder))
    return folder


def state_dict(folder: Path) -> dict[str, torch.Tensor]:
    checkpoint = open_checkpoint(folder)
    return {name: checkpoint.get(name) for name in checkpoint.keys()}


def task_arithmetic(base: dict, tasks: list[dict], scaling: float = 0.5) -> dict:
    """theta_0 + lambda * sum_k (theta_k - theta_0) (float tensors; others from the base)."""
    return {
        name: tensor + scaling * sum(task[name] - tensor for task in tasks)
        if tensor.is_floating_point()
        else tensor
        for name, tensor in base.items()
    }

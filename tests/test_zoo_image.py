"""The quick image zoo: EfficientNet-Lite0 fine-tuned on three grayscale image tasks."""

from __future__ import annotations

import pytest
import torch

from tadrop.evaluate import evaluate
from tadrop.experiments.zoo_numbers import zoo_numbers
from tadrop.io import open_checkpoint
from tadrop.zoo import build_zoo, load_zoo

pytestmark = pytest.mark.slow  # builds the quick image zoo (about 20 s)


@pytest.fixture(scope="module")
def quick_image_zoo(tmp_path_factory):
    home = tmp_path_factory.mktemp("image_home")
    build_zoo("image", "quick", home=home, measure=zoo_numbers)
    return load_zoo("image", "quick", home=home, verify_hashes=True)


def test_image_zoo_models_are_complete_checkpoints(quick_image_zoo):
    base = open_checkpoint(quick_image_zoo.base_dir)
    assert not any(name.startswith("_fc.") for name in base.keys())  # ImageNet head removed
    for task_dir in quick_image_zoo.task_dirs.values():
        finetuned = open_checkpoint(task_dir)
        assert finetuned.keys() == base.keys()
        for name in base.keys():
            if "running_" in name or "num_batches_tracked" in name:
                # BatchNorm statistics stay at their ImageNet values (docs/zoo.md)
                assert torch.equal(finetuned.get(name), base.get(name)), name
            else:
                assert not torch.equal(finetuned.get(name), base.get(name)), name


def test_image_zoo_finetuned_models_beat_base_and_merge_sensibly(quick_image_zoo):
    base = {name: t for name, t in _tensors(quick_image_zoo.base_dir).items()}
    tasks = [_tensors(d) for d in quick_image_zoo.task_dirs.values()]
    merged = {
        name: t + 0.3 * sum(task[name] - t for task in tasks) if t.is_floating_point() else t
        for name, t in base.items()
    }
    table = evaluate(lambda task: merged, quick_image_zoo)
    for row in table.itertuples():
        chance = 1 / len(quick_image_zoo.label_names(row.task))
        assert row.individual > row.base > chance, row
        assert chance < row.merged <= row.individual + 0.05, row


def _tensors(folder) -> dict[str, torch.Tensor]:
    checkpoint = open_checkpoint(folder)
    return {name: checkpoint.get(name) for name in checkpoint.keys()}


def test_image_zoo_shows_heterogeneity_and_a_merge_that_matters(quick_image_zoo):
    """The numbers docs/zoo.md promises, as recorded in the manifest at build time."""
    heterogeneity = quick_image_zoo.manifest["heterogeneity"]
    spreads = [task["spread"] for task in heterogeneity["tasks"].values()]
    assert sum(spread >= 0.3 for spread in spreads) > len(spreads) / 2, spreads
    for task in heterogeneity["tasks"].values():  # BatchNorm weights drop far less than convs
        assert task["by_kind"]["norm"] + 0.1 < task["by_kind"]["conv"], task
    merges = quick_image_zoo.manifest["merges"]
    accuracy = merges["mean_accuracy"]
    assert merges["individual_minus_base"] >= 0.10
    assert merges["individual_minus_task_arithmetic_1.0"] >= 0.05
    assert accuracy["emr"] > accuracy["ties"] >= accuracy["task_arithmetic_0.3"]

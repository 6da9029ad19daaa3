"""Fine-tuning levers of the zoo recipes: gradual unfreezing and per-component optimiser groups."""

from __future__ import annotations

import pytest
import torch

from tadrop.zoo.training import FinetuneSettings, _backbone_groups, _unfreeze_steps


class _TwoLayers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embeddings = torch.nn.Embedding(4, 2)
        self.layer = torch.nn.ModuleList(
            torch.nn.ModuleDict({"query": torch.nn.Linear(2, 2)}) for _ in range(3)
        )


def test_gradual_unfreezing_starts_lower_layers_later():
    module = _TwoLayers()
    starts = {id(p): s for p, s in _unfreeze_steps(module, 0.9, 100)}
    first = {name: starts.get(id(p), 0) for name, p in module.named_parameters()}
    assert first["layer.2.query.weight"] == 0  # the top layer trains from the first step
    assert first["layer.1.query.weight"] == 45  # half-way down: 0.9 * 0.5 * 100
    assert first["layer.0.query.weight"] == 90
    assert first["embeddings.weight"] == 90  # no layer index: with the lowest layer
    assert _unfreeze_steps(module, 0.0, 100) == []


def test_unfreezing_only_the_lowest_layers_trains_the_others_from_the_start():
    module = _TwoLayers()  # layers 0, 1, 2
    for layers, expected in ((1, (90, 0, 0)), (2, (90, 45, 0)), (0, (0, 0, 0))):
        starts = {id(p): s for p, s in _unfreeze_steps(module, 0.9, 100, layers)}
        first = {name: starts.get(id(p), 0) for name, p in module.named_parameters()}
        assert tuple(first[f"layer.{i}.query.weight"] for i in range(3)) == expected, layers
        assert first["embeddings.weight"] == 90  # no layer index: always with the lowest


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_unfreeze_fraction_outside_its_range_is_refused(fraction):
    with pytest.raises(ValueError, match="unfreeze_fraction"):
        FinetuneSettings(epochs=1, batch_size=2, lr_backbone=1e-4, lr_head=1e-3,
                         unfreeze_fraction=fraction)  # fmt: skip


def test_per_component_learning_rates_and_eps_make_their_own_groups():
    settings = FinetuneSettings(
        epochs=1, batch_size=2, lr_backbone=1e-4, lr_head=1e-3,
        kind_lr=(("attn.q", 10.0),), kind_eps=(("embedding", 1e-3),),
    )  # fmt: skip
    groups = _backbone_groups(_TwoLayers(), settings)
    by_setting = {(g["lr"], g["eps"]): len(g["params"]) for g in groups}
    assert by_setting == {(1e-4, 1e-3): 1, (1e-3, 1e-8): 6}

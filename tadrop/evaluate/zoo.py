"""Accuracy of a merged backbone on a demo zoo's held-out sets (text or image zoo)."""

from __future__ import annotations

import torch

from tadrop.evaluate.scores import EvaluationError, StateDict, accuracy_scores
from tadrop.zoo.backbones import Backbone, Encoded
from tadrop.zoo.load import Zoo
from tadrop.zoo.training import predict


class ZooEvaluator:
    """Accuracy on a demo zoo's held-out sets (text or image zoo): backbone + fine-tuned head.

    The backbone module is built once; each call loads the given tensors into it (tensors the
    state dict leaves out, which may only be non-float buffers, keep their base values). Test
    sets are encoded once and kept in memory.
    """

    def __init__(self, zoo: Zoo, *, batch_size: int = 128) -> None:
        self.zoo = zoo
        self.batch_size = batch_size
        self._backbone: Backbone | None = None
        self._module: torch.nn.Module | None = None
        self._base_state: dict[str, torch.Tensor] = {}
        self._eval_sets: dict[str, Encoded] = {}
        self._heads: dict[str, torch.nn.Linear] = {}

    @property
    def tasks(self) -> list[str]:
        return self.zoo.tasks

    def individual_scores(self) -> dict[str, dict[str, float]]:
        return self.zoo.individual_scores()

    def base_scores(self) -> dict[str, dict[str, float]]:
        return self.zoo.base_scores()

    def evaluate(self, task: str, state_dict: StateDict) -> dict[str, float]:
        backbone, module = self._loaded()
        module.load_state_dict(self._completed(state_dict), strict=True)
        if task not in self._eval_sets:
            self._eval_sets[task] = backbone.encode(self.zoo.load_eval_set(task))
            self._heads[task] = self.zoo.load_head(task, "finetuned")
        encoded = self._eval_sets[task]
        predictions = predict(backbone, module, self._heads[task], encoded, self.batch_size)
        return accuracy_scores(predictions == encoded.labels)

    def _loaded(self) -> tuple[Backbone, torch.nn.Module]:
        if self._backbone is None or self._module is None:
            self._backbone = self.zoo.backbone()
            self._module = self._backbone.load(self.zoo.base_dir)
            self._base_state = {n: t.clone() for n, t in self._module.state_dict().items()}
        return self._backbone, self._module

    def _completed(self, state_dict: StateDict) -> dict[str, torch.Tensor]:
        unknown = [name for name in state_dict if name not in self._base_state]
        missing = [
            name
            for name, tensor in self._base_state.items()
            if name not in state_dict and tensor.is_floating_point()
        ]
        if unknown or missing:
            raise EvaluationError(
                f"the state dict does not match the {self.zoo.zoo} zoo's backbone "
                f"({self.zoo.base_dir / 'model.safetensors'}): unknown tensors {unknown[:3]}, "
                f"missing tensors {missing[:3]}. Pass every backbone tensor under the names "
                "used in the zoo's checkpoints (task heads are not part of the backbone)."
            )
        return {**self._base_state, **state_dict}

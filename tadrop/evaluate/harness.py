"""lm-evaluation-harness tasks on the in-memory merged model (optional: ``pip install
tadrop[lm-eval]``; nothing else in tadrop needs ``lm_eval``).

The base folder's causal LM is built once (``InMemoryModel``); each scored state dict is copied
into it and the harness runs on it through its ``HFLM`` wrapper, so no merged model is written.
``tasks`` maps each family task to the harness task name(s) that score it. Without internet,
point the harness at local data: write a task YAML (``dataset_path: json`` with
``dataset_kwargs: {data_files: {test: /path/to/file.jsonl}}``) in a folder and pass that folder
as ``include_path`` (``eval.lm_eval_include`` in a config).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tadrop.evaluate.inmemory import InMemoryModel
from tadrop.evaluate.scores import COUNT, EvaluationError, StateDict


def lm_eval_available() -> bool:
    """Whether the harness and its Hugging Face backend (``lm_eval[hf]``) import."""
    try:
        import lm_eval.models.huggingface  # noqa: F401
    except ImportError:
        return False
    return True


class HarnessEvaluator:
    """``tasks[family task]``: harness task name(s); metrics are named ``<harness task>/<metric>``
    when a family task has several harness tasks."""

    def __init__(
        self,
        base: str | os.PathLike,
        tasks: Mapping[str, str | Sequence[str]],
        *,
        include_path: str | os.PathLike | None = None,
        device: str = "auto",
        batch_size: int = 8,
        limit: int | None = None,
    ) -> None:
        if not lm_eval_available():
            raise EvaluationError(
                "lm-evaluation-harness is not installed: pip install 'tadrop[lm-eval]' "
                "(or lm_eval), or use eval.data with tadrop's own evaluators"
            )
        self.base = Path(base)
        self.harness_tasks = {
            task: [names] if isinstance(names, str) else list(names)
            for task, names in tasks.items()
        }
        self.include_path = None if include_path is None else str(include_path)
        self.device = device
        self.batch_size = batch_size
        self.limit = limit
        self._model: InMemoryModel | None = None

    @property
    def tasks(self) -> list[str]:
        return list(self.harness_tasks)

    def evaluate(self, task: str, state_dict: StateDict) -> dict[str, float]:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
        from transformers import AutoTokenizer

        if task not in self.harness_tasks:
            raise EvaluationError(f"no harness task for {task!r}; tasks: {self.tasks}")
        module = self.model().load(state_dict)
        wrapped = HFLM(
            pretrained=module,
            tokenizer=AutoTokenizer.from_pretrained(str(self.base)),
            batch_size=self.batch_size,
        )
        names = self.harness_tasks[task]
        output = simple_evaluate(
            model=wrapped,
            tasks=names,
            task_manager=TaskManager(include_path=self.include_path),
            limit=self.limit,
        )
        return flatten_results(output, names)

    def model(self) -> InMemoryModel:
        if self._model is None:
            from transformers import AutoModelForCausalLM

            self._model = InMemoryModel(
                self.base, AutoModelForCausalLM.from_pretrained, self.device
            )
        return self._model


def flatten_results(output: Mapping[str, Any], names: list[str]) -> dict[str, float]:
    """The harness's ``{"results": {task: {"acc,none": .., "acc_stderr,none": ..}}}`` as our
    flat scores (``n`` from ``n-samples``)."""
    scores: dict[str, float] = {}
    for name in names:
        prefix = f"{name}/" if len(names) > 1 else ""
        for key, value in output["results"].get(name, {}).items():
            metric, _, _filter = key.partition(",")
            if not isinstance(value, (int, float)) or metric == "alias":
                continue
            scores[f"{prefix}{metric}"] = float(value)  # metric or metric_stderr
        samples = output.get("n-samples", {}).get(name, {})
        if "effective" in samples and not prefix:
            scores[COUNT] = int(samples["effective"])
    return scores

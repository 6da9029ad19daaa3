"""Causal language models (any ``AutoModelForCausalLM`` folder: Llama, Qwen, Mistral, GPT-2...)
scored in memory on one file per task: perplexity, multiple choice, or exact match.

Multiple choice follows lm-evaluation-harness: each choice is the continuation ``" " + choice``
of the question; its log-likelihood is the sum of the log-probabilities of its tokens, where
the continuation's tokens are those of ``tokenize(question + continuation)`` after the
question's tokens. ``acc`` picks the choice of highest log-likelihood, ``acc_norm`` the highest
log-likelihood divided by the choice's length in characters (the harness's ``len(choice)``;
bytes for ASCII text). Exact match generates greedily, keeps the first line, strips spaces and
compares with the answer. The tokenizer's BOS token, when it has one, starts every sequence;
``add_bos=False`` leaves it out as lm-evaluation-harness's ``HFLM`` does by default (its
``add_bos_token=False``): with it, acc and acc_norm equal the harness's (a test checks this).
Standard errors are sqrt(p (1 - p) / n); the harness divides by n - 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tadrop.evaluate import lm_data
from tadrop.evaluate.inmemory import InMemoryModel
from tadrop.evaluate.scores import (
    EvaluationError,
    StateDict,
    accuracy_scores,
    perplexity_scores,
)


class CausalLMEvaluator:
    """``data[task]`` is the task's file; ``metric`` one of ``lm_data.LM_METRICS`` for every
    task, a {task: metric} mapping, or None to infer each from its file."""

    def __init__(
        self,
        base: str | os.PathLike,
        data: Mapping[str, str | os.PathLike],
        *,
        metric: str | Mapping[str, str] | None = None,
        tokenizer: str | os.PathLike | None = None,
        device: str = "auto",
        batch_size: int = 8,
        max_length: int = 1024,
        max_new_tokens: int = 32,
        add_bos: bool = True,
    ) -> None:
        self.base = Path(base)
        self.data = {task: Path(path) for task, path in data.items()}
        chosen = metric if isinstance(metric, Mapping) else dict.fromkeys(self.data, metric)
        self.metrics = {
            task: lm_data.check_lm_file(path, chosen.get(task)) for task, path in self.data.items()
        }
        self.tokenizer_path = Path(tokenizer) if tokenizer else self.base
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.max_new_tokens = max_new_tokens
        self.add_bos = add_bos
        self._model: InMemoryModel | None = None
        self._tokenizer: Any = None

    @property
    def tasks(self) -> list[str]:
        return list(self.data)

    def evaluate(self, task: str, state_dict: StateDict) -> dict[str, float]:
        if task not in self.data:
            raise EvaluationError(f"no evaluation file for task {task!r}; tasks: {self.tasks}")
        module = self.model().load(state_dict)
        scorer = getattr(self, f"_{self.metrics[task]}")
        with torch.inference_mode():
            return scorer(module, self.data[task])

    def model(self) -> InMemoryModel:
        if self._model is None:
            from transformers import AutoModelForCausalLM

            self._model = InMemoryModel(
                self.base, AutoModelForCausalLM.from_pretrained, self.device
            )
        return self._model

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(str(self.tokenizer_path))
            except (OSError, ValueError) as error:
                raise EvaluationError(
                    f"no tokenizer in {self.tokenizer_path} ({error}); copy the tokenizer "
                    "files into the base folder or set eval.tokenizer"
                ) from error
        return self._tokenizer

    def encode(self, text: str, *, start: bool = True) -> list[int]:
        """Token ids of ``text`` (no special tokens), after BOS when ``start``, ``add_bos``
        and the tokenizer has one."""
        tokenizer = self.tokenizer()
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        bos = tokenizer.bos_token_id
        return ([bos] if start and self.add_bos and bos is not None else []) + ids

    # -- perplexity ---------------------------------------------------------------------
    def _perplexity(self, module: torch.nn.Module, path: Path) -> dict[str, float]:
        """exp(mean NLL) over every token after the first of each document; documents longer
        than max_length are cut into windows of max_length predicted tokens."""
        windows = []
        for document in lm_data.perplexity_documents(path):
            ids = self.encode(document)
            for start in range(0, len(ids) - 1, self.max_length):
                windows.append(ids[start : start + self.max_length + 1])
        scored = self.token_logprobs(module, [(window, len(window) - 1) for window in windows])
        return perplexity_scores(-torch.cat(scored))

    # -- multiple choice ----------------------------------------------------------------
    def pair_ids(self, context: str, continuation: str) -> tuple[list[int], int]:
        """(ids of context + continuation, number of continuation tokens), split the
        harness's way: trailing spaces of the context move to the continuation."""
        stripped = context.rstrip(" ")
        continuation = context[len(stripped) :] + continuation
        whole = self.encode(stripped + continuation)
        context_length = len(self.encode(stripped))
        if context_length == 0:  # no BOS, no context: the harness's prefix token (BOS, else EOS)
            tokenizer = self.tokenizer()
            prefix = tokenizer.bos_token_id
            whole = [tokenizer.eos_token_id if prefix is None else prefix, *whole]
            context_length = 1
        return whole, len(whole) - context_length

    def _multiple_choice(self, module: torch.nn.Module, path: Path) -> dict[str, float]:
        records = lm_data.choice_records(path)
        requests = [
            self.pair_ids(question, " " + choice)
            for question, choices, _ in records
            for choice in choices
        ]
        sums = [float(values.sum()) for values in self.token_logprobs(module, requests)]
        hits, hits_norm, offset = [], [], 0
        for _, choices, answer in records:
            likelihoods = torch.tensor(sums[offset : offset + len(choices)], dtype=torch.float64)
            lengths = torch.tensor([float(len(choice)) for choice in choices], dtype=torch.float64)
            offset += len(choices)
            hits.append(int(likelihoods.argmax()) == answer)
            hits_norm.append(int((likelihoods / lengths).argmax()) == answer)
        return {
            **accuracy_scores(torch.tensor(hits), "acc"),
            **accuracy_scores(torch.tensor(hits_norm), "acc_norm"),
        }

    def token_logprobs(
        self, module: torch.nn.Module, requests: list[tuple[list[int], int]]
    ) -> list[torch.Tensor]:
        """For each (ids, k): log p(token | the tokens before it) of the last k tokens of ids,
        in batches of similar length (right padding); ids are cut to their last max_length + 1."""
        device = next(module.parameters()).device
        order = sorted(range(len(requests)), key=lambda index: -len(requests[index][0]))
        results: list[torch.Tensor] = [torch.empty(0)] * len(requests)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            sequences = [requests[index][0][-(self.max_length + 1) :] for index in chosen]
            width = max(len(sequence) for sequence in sequences) - 1
            inputs = torch.zeros(len(chosen), width, dtype=torch.long)
            targets = torch.zeros(len(chosen), width, dtype=torch.long)
            mask = torch.zeros(len(chosen), width, dtype=torch.long)
            for row, sequence in enumerate(sequences):
                inputs[row, : len(sequence) - 1] = torch.tensor(sequence[:-1])
                targets[row, : len(sequence) - 1] = torch.tensor(sequence[1:])
                mask[row, : len(sequence) - 1] = 1
            logits = module(input_ids=inputs.to(device), attention_mask=mask.to(device)).logits
            # log p(target) without a (batch, width, vocab) copy: minus the cross-entropy
            logprobs = -F.cross_entropy(
                logits.float().transpose(1, 2), targets.to(device), reduction="none"
            ).cpu()  # (batch, width)
            for row, index in enumerate(chosen):
                sequence, count = sequences[row], requests[index][1]
                values = logprobs[row, : len(sequence) - 1].double()
                results[index] = values[-count:]
        return results

    # -- exact match --------------------------------------------------------------------
    def _exact_match(self, module: torch.nn.Module, path: Path) -> dict[str, float]:
        records = lm_data.generation_records(path)
        tokenizer = self.tokenizer()
        pad = tokenizer.pad_token_id
        pad = tokenizer.eos_token_id if pad is None else pad
        device = next(module.parameters()).device
        hits = []
        for start in range(0, len(records), self.batch_size):
            batch = records[start : start + self.batch_size]
            prompts = [self.encode(prompt)[-self.max_length :] for prompt, _ in batch]
            width = max(len(ids) for ids in prompts)
            inputs = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros(len(batch), width, dtype=torch.long)
            for row, ids in enumerate(prompts):  # left padding, so generation continues
                inputs[row, width - len(ids) :] = torch.tensor(ids)
                mask[row, width - len(ids) :] = 1
            generated = module.generate(
                input_ids=inputs.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )[:, width:]
            for row, (_, answer) in enumerate(batch):
                text = tokenizer.decode(generated[row], skip_special_tokens=True)
                hits.append(first_line(text) == answer.strip())
        return accuracy_scores(torch.tensor(hits), "exact_match")


def first_line(text: str) -> str:
    """A generation as compared with the answer: its first non-empty line, stripped."""
    lines = [line.strip() for line in text.strip().splitlines()]
    return lines[0] if lines else ""

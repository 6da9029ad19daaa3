"""Evaluation files of causal language models, one per task, and which metric each one fits.

- perplexity: a text file (``.txt``; documents separated by blank lines) or JSON lines with a
  ``text`` field;
- multiple_choice: JSON lines with ``question``, ``choices`` (a list of strings) and
  ``answer`` (the index of the right choice, or its text);
- exact_match: JSON lines with ``prompt`` and ``answer``.

No heavy imports: config validation uses ``check_lm_file``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LM_METRICS = ("perplexity", "multiple_choice", "exact_match")
FIELDS = {
    "perplexity": ("text",),
    "multiple_choice": ("question", "choices", "answer"),
    "exact_match": ("prompt", "answer"),
}
TEXT_SUFFIXES = (".txt", ".text", ".md")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (blank lines skipped); errors name the line."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from error
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object per line")
            records.append(record)
    if not records:
        raise ValueError(f"{path} holds no records; write one JSON object per line")
    return records


def infer_lm_metric(path: Path) -> str:
    """The metric a file fits: text files -> perplexity, JSONL by the keys of its first line."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; a causal LM task needs one text or JSONL file")
    if path.suffix.lower() in TEXT_SUFFIXES:
        return "perplexity"
    keys = set(read_jsonl(path)[0])
    for metric in ("multiple_choice", "exact_match", "perplexity"):
        if set(FIELDS[metric]) <= keys:
            return metric
    raise ValueError(
        f"{path}: cannot tell the metric from the keys {sorted(keys)}; write JSON lines with "
        "question/choices/answer (multiple_choice), prompt/answer (exact_match) or text "
        "(perplexity), or set eval.metric"
    )


def check_lm_file(path: Path, metric: str | None) -> str:
    """The metric of ``path`` (``metric``, else inferred), after checking the file fits it."""
    inferred = infer_lm_metric(path)
    if metric is None or metric == inferred:
        return inferred
    if metric == "perplexity" and Path(path).suffix.lower() in TEXT_SUFFIXES:
        return metric
    keys = set(read_jsonl(Path(path))[0])
    missing = sorted(set(FIELDS[metric]) - keys)
    if missing:
        raise ValueError(f"{path}: metric {metric} needs the keys {missing} in every line")
    return metric


def perplexity_documents(path: Path) -> list[str]:
    """Documents of a perplexity file: blank-line separated paragraphs, or JSONL ``text``."""
    if path.suffix.lower() in TEXT_SUFFIXES:
        text = path.read_text(encoding="utf-8")
        documents = [part.strip("\n") for part in text.split("\n\n")]
    else:
        documents = [str(record["text"]) for record in read_jsonl(path)]
    documents = [document for document in documents if document.strip()]
    if not documents:
        raise ValueError(f"{path} holds no text to score")
    return documents


def choice_records(path: Path) -> list[tuple[str, list[str], int]]:
    """(question, choices, index of the right choice) of a multiple-choice file."""
    records = []
    for number, record in enumerate(read_jsonl(path), start=1):
        choices = record.get("choices")
        if not isinstance(choices, list) or len(choices) < 2:
            raise ValueError(f"{path}: record {number}: 'choices' must list two or more strings")
        choices = [str(choice) for choice in choices]
        answer = record.get("answer")
        if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices):
            index = answer
        elif isinstance(answer, str) and answer in choices:
            index = choices.index(answer)
        else:
            raise ValueError(
                f"{path}: record {number}: 'answer' {answer!r} is neither an index into "
                f"'choices' (0..{len(choices) - 1}) nor one of them"
            )
        records.append((str(record.get("question", "")), choices, index))
    return records


def generation_records(path: Path) -> list[tuple[str, str]]:
    """(prompt, expected answer) of an exact-match file."""
    return [(str(record["prompt"]), str(record["answer"])) for record in read_jsonl(path)]

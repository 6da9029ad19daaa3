"""Held-out test sets on disk: `test.jsonl` ({"text", "label"} per line) or `test.npz`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tadrop.zoo.datasets import LabelledData
from tadrop.zoo.errors import CorruptZooError


def eval_file_name(data: LabelledData) -> str:
    return "test.npz" if isinstance(data.inputs, np.ndarray) else "test.jsonl"


def write_eval_set(path: Path, data: LabelledData) -> None:
    """Texts as JSON lines; images as uint8 `images` (N, H, W) and int64 `labels` in an npz."""
    if path.suffix == ".npz":
        with open(path, "wb") as stream:
            np.savez_compressed(stream, images=data.inputs, labels=data.labels)
        return
    lines = (
        json.dumps({"text": text, "label": int(label)}, ensure_ascii=False)
        for text, label in zip(data.inputs, data.labels, strict=True)
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_eval_set(path: Path, label_names: tuple[str, ...]) -> LabelledData:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                images, labels = arrays["images"], arrays["labels"].astype(np.int64)
            return LabelledData(images, labels, label_names)
        lines = path.read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line]
        labels = np.array([row["label"] for row in rows], dtype=np.int64)
        return LabelledData([row["text"] for row in rows], labels, label_names)
    except (OSError, ValueError, KeyError) as error:
        raise CorruptZooError(f"{path}: unreadable test set ({error}); rebuild the zoo.") from None

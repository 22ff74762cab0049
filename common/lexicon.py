"""VADER's lexicon score, the sentiment model's second input (only text-sentiment uses it)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from .tokens import tokenizer

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer


@functools.lru_cache(maxsize=1)
def _vader() -> SentimentIntensityAnalyzer:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def lexicon_scores(texts: list[str], max_length: int | None = None) -> np.ndarray:
    """VADER's compound score (-1..1) per text, FP32 [n, 1]: the `lexicon` input of the sentiment
    model, which learned when to trust it (a lot on tweet-like text, little on reviews). Training
    (sai/models/sentiment_training.py) calls this same function, so both sides compute it identically.

    A text longer than the token limit is scored on the part the encoder keeps: the model sees one
    span through both inputs, and VADER's cost grows faster than linearly (400 ms for 20k chars)."""
    sia = _vader()
    spans = []
    for t, e in zip(texts, tokenizer(max_length).encode_batch(texts)):
        if e.overflowing:
            t = t[: max((end for (_, end), special in zip(e.offsets, e.special_tokens_mask) if not special), default=0)]
        spans.append(t)
    return np.array([[sia.polarity_scores(t)["compound"]] for t in spans], dtype=np.float32)

"""Tokenising texts for the MiniLM `text_encoder` with the `tokenizers` package: the text functions
and the model build (sai/models/text_encoder.py, sai/models/sentiment_head.py) share this code.

The tokenizer ships with the function code (see text_assets/README.md): a function image must not
need the model repository, which lives next to Triton (object storage in production).
"""

from __future__ import annotations

import functools
import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .settings import setting

if TYPE_CHECKING:
    from tokenizers import Tokenizer

DEFAULT_TOKENIZER = pathlib.Path(__file__).resolve().parent / "text_assets" / "tokenizer.json"
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
POSITION_LIMIT = 512  # all-MiniLM-L6-v2's position table

tokenizer_path = setting("TOKENIZER_PATH", str, "")  # "": DEFAULT_TOKENIZER
# Tokens kept per text, [CLS]/[SEP] included: 256 is all-MiniLM-L6-v2's training length. Longer
# texts are truncated and responses say so.
max_tokens = setting("MAX_TOKENS", int, 256, low=8, high=POSITION_LIMIT)


@functools.lru_cache(maxsize=4)
def load(path: str, max_length: int) -> Tokenizer:
    """The tokenizer in `path`, truncating at `max_length` and padding to the longest text."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    # The file fixes padding and truncation at 128: pad to the longest text, cut at max_length.
    tok.enable_truncation(max_length)
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    return tok


def tokenizer(max_length: int | None = None) -> Tokenizer:
    """The configured tokenizer (TOKENIZER_PATH, else the shipped one) cutting at `max_length`
    (default MAX_TOKENS)."""
    return load(tokenizer_path() or str(DEFAULT_TOKENIZER), max_length or max_tokens())


@dataclass
class Tokenized:
    feeds: dict[str, np.ndarray]  # INT64 [n, longest] per encoder input
    tokens: list[int]  # tokens kept per text ([CLS]/[SEP] included)
    truncated: list[bool]


def tokenize(texts: list[str], max_length: int | None = None, tok: Tokenizer | None = None) -> Tokenized:
    """Encoder inputs for `texts` from `tok` (default: `tokenizer(max_length)`)."""
    encodings = (tok or tokenizer(max_length)).encode_batch(texts)
    feeds = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    return Tokenized(feeds, [sum(e.attention_mask) for e in encodings], [bool(e.overflowing) for e in encodings])

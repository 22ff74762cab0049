"""Shared by text-sentiment, text-embed and text-keywords: reading texts from a request, tokenising
them for the MiniLM `text_encoder` with the `tokenizers` package, and embedding them on Triton.

Settings (environment, read per request so tests and operators can change them):
  MAX_TEXTS        most texts in one request (default 32, the local encoder's max_batch_size)
  MAX_TEXT_CHARS   most characters in one text (default 20000)
  MAX_TOKENS       tokens kept per text, [CLS]/[SEP] included (default 256, all-MiniLM-L6-v2's
                   training length; at most 512, its position table); longer texts are truncated
                   and the response says so
  TOKENIZER_PATH   tokenizer.json to use (default: text_assets/tokenizer.json next to this file)
  ENCODER_MODEL    Triton model name of the encoder (default text_encoder)
"""

from __future__ import annotations

import functools
import os
import pathlib
from dataclasses import dataclass

import numpy as np

from . import request, triton
from .errors import FunctionError

# The tokenizer ships with the function code (see text_assets/README.md): a function image must not
# need the model repository, which lives next to Triton (object storage in production).
DEFAULT_TOKENIZER = pathlib.Path(__file__).resolve().parent / "text_assets" / "tokenizer.json"
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
POSITION_LIMIT = 512


def _int_env(name: str, default: int, low: int = 1, high: int | None = None) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default
    return max(low, min(value, high)) if high else max(low, value)


def max_texts() -> int:
    return _int_env("MAX_TEXTS", 32)


def max_chars() -> int:
    return _int_env("MAX_TEXT_CHARS", 20000)


def max_tokens() -> int:
    return _int_env("MAX_TOKENS", 256, low=8, high=POSITION_LIMIT)


def encoder_model() -> str:
    return os.environ.get("ENCODER_MODEL", "text_encoder")


# ---------------------------------------------------------------- reading texts


@dataclass
class TextRequest:
    texts: list[str]
    batch: bool  # the client sent "texts" (answer with a list) rather than "text" or a plain body
    options: dict  # the other fields of a JSON object body (function parameters)


def _check_text(value, where: str) -> str:
    if not isinstance(value, str):
        raise FunctionError(400, "invalid_field", f"{where} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise FunctionError(400, "empty_text", f"{where} is empty or only whitespace")
    if len(value) > max_chars():
        raise FunctionError(413, "text_too_long", f"{where} has {len(value)} characters; the limit is {max_chars()}")
    return value


# What `curl -d 'some text' URL` sends: the body is the text itself, not a form.
CURL_DEFAULT_TYPES = ("", "application/x-www-form-urlencoded")


def read_texts(event, allow_batch: bool = True) -> TextRequest:
    """`{"text": "..."}`, `{"texts": [...]}` (if allow_batch) or a text/plain body, validated."""
    request.require_method(event, "POST")
    kind = request.content_type(event)
    if kind in CURL_DEFAULT_TYPES and request.body(event).lstrip()[:1] == b"{":
        kind = "application/json"  # `curl -d '{"text": ...}'` without a JSON Content-Type
    if kind == "text/plain" or kind in CURL_DEFAULT_TYPES:
        data = request.body(event)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FunctionError(400, "invalid_encoding", f"body is not valid UTF-8 (byte {exc.start})") from exc
        return TextRequest([_check_text(text, "the text")], False, {})
    if kind != "application/json":
        raise FunctionError(
            415, "unsupported_media_type",
            f"Content-Type {kind!r} is not supported; send application/json or text/plain",
        )
    payload = request.json_body(event)
    if not isinstance(payload, dict):
        raise FunctionError(400, "invalid_json", f"JSON body must be an object, got {type(payload).__name__}")
    has_text, has_texts = "text" in payload, "texts" in payload
    if has_texts and not allow_batch:
        raise FunctionError(400, "invalid_field", "this function takes one text: send {\"text\": \"...\"}")
    if has_text == has_texts:
        wanted = 'one of "text" or "texts"' if allow_batch else '"text"'
        raise FunctionError(400, "missing_field", f"JSON body must have {wanted}" + (", not both" if has_text else ""))
    options = {k: v for k, v in payload.items() if k not in ("text", "texts")}
    if has_text:
        return TextRequest([_check_text(payload["text"], '"text"')], False, options)
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise FunctionError(400, "invalid_field", f'"texts" must be a list of strings, got {type(texts).__name__}')
    if not texts:
        raise FunctionError(400, "empty_text", '"texts" is an empty list')
    if len(texts) > max_texts():
        raise FunctionError(413, "too_many_texts", f'"texts" has {len(texts)} items; the limit is {max_texts()} per request')
    return TextRequest([_check_text(t, f'"texts"[{i}]') for i, t in enumerate(texts)], True, options)


def bool_option(options: dict, name: str, default: bool) -> bool:
    value = options.get(name, default)
    if not isinstance(value, bool):
        raise FunctionError(400, "invalid_parameter", f"{name} must be true or false, got {value!r}")
    return value


# ---------------------------------------------------------------- tokenising


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str, max_length: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    # The file fixes padding and truncation at 128: pad to the longest text, cut at max_length.
    tok.enable_truncation(max_length)
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    return tok


def tokenizer(max_length: int | None = None):
    return _tokenizer(os.environ.get("TOKENIZER_PATH") or str(DEFAULT_TOKENIZER), max_length or max_tokens())


@dataclass
class Tokenized:
    feeds: dict[str, np.ndarray]  # INT64 [n, longest] per encoder input
    tokens: list[int]  # tokens kept per text ([CLS]/[SEP] included)
    truncated: list[bool]


def tokenize(texts: list[str], max_length: int | None = None) -> Tokenized:
    encodings = tokenizer(max_length).encode_batch(texts)
    feeds = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    return Tokenized(feeds, [sum(e.attention_mask) for e in encodings], [bool(e.overflowing) for e in encodings])


# ---------------------------------------------------------------- Triton


def max_batch(model: str) -> int:
    """The model's max_batch_size from Triton (cached): larger requests are split to fit it."""
    return int(triton.model_config(model).get("max_batch_size") or 1)


def run_batched(model: str, texts: list[str], outputs: list[str], max_length: int | None = None,
                extra_inputs: dict[str, np.ndarray] | None = None):
    """Tokenise and infer `texts` on `model` in as few calls as max_batch_size allows (one for a
    request within the limit). `extra_inputs` are further per-text tensors (row i belongs to text i).
    Returns ({output: array in input order}, Tokenized, model_version)."""
    limit = max_batch(model)
    order = list(range(len(texts)))
    if len(texts) > limit:
        # Length-sorted chunks pad far less than arrival order.
        order.sort(key=lambda i: len(texts[i]))
    results: dict[str, np.ndarray] = {}
    tokens, truncated = [0] * len(texts), [False] * len(texts)
    version = ""
    for start in range(0, len(order), limit):
        idx = order[start:start + limit]
        tok = tokenize([texts[i] for i in idx], max_length)
        feeds = {**tok.feeds, **{name: rows[idx] for name, rows in (extra_inputs or {}).items()}}
        out = triton.infer(model, feeds, outputs)
        version = out.model_version
        for name in outputs:
            if name not in results:
                results[name] = np.empty((len(texts),) + out[name].shape[1:], out[name].dtype)
            results[name][idx] = out[name]
        for j, i in enumerate(idx):
            tokens[i], truncated[i] = tok.tokens[j], tok.truncated[j]
    return results, Tokenized({}, tokens, truncated), version


@functools.lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def lexicon_scores(texts: list[str], max_length: int | None = None) -> np.ndarray:
    """VADER's compound score (-1..1) per text, FP32 [n, 1]: the `lexicon` input of the sentiment
    model, which learned when to trust it (a lot on tweet-like text, little on reviews). Training
    (sai/models/sentiment.py) calls this same function, so both sides compute it identically.

    A text longer than the token limit is scored on the part the encoder keeps: the model sees one
    span through both inputs, and VADER's cost grows faster than linearly (400 ms for 20k chars)."""
    sia = _vader()
    spans = []
    for t, e in zip(texts, tokenizer(max_length).encode_batch(texts)):
        if e.overflowing:
            t = t[: max((end for (_, end), special in zip(e.offsets, e.special_tokens_mask) if not special), default=0)]
        spans.append(t)
    return np.array([[sia.polarity_scores(t)["compound"]] for t in spans], dtype=np.float32)


def embed(texts: list[str], normalize: bool = True, max_length: int | None = None):
    """Sentence embeddings from the shared encoder: (array [n, 384], Tokenized, model_version)."""
    name = "embeddings" if normalize else "mean_pooled"
    out, tok, version = run_batched(encoder_model(), texts, [name], max_length)
    return out[name], tok, version

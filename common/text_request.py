"""Reading texts from a request (shared by text-sentiment, text-embed and text-keywords):
`{"text": "..."}`, `{"texts": [...]}` or a plain-text body, with limits and clear 4xx errors.
A database change relayed by `sai db watch` (docs/triggers.md), `{"table", "op", "row": {...}}`,
is read as the text in the row's column TEXT_FIELD."""

from __future__ import annotations

from dataclasses import dataclass

from . import request
from .contract import Event
from .errors import FunctionError
from .settings import setting

max_texts = setting("MAX_TEXTS", int, 32, low=1)  # the local encoder's max_batch_size
max_chars = setting("MAX_TEXT_CHARS", int, 20000, low=1)
text_field = setting("TEXT_FIELD", str, "text")  # the column holding the text in a database change


@dataclass
class TextRequest:
    texts: list[str]
    batch: bool  # the client sent "texts" (answer with a list) rather than "text" or a plain body
    options: dict  # the other fields of a JSON object body (function parameters)


def _check_text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise FunctionError(400, "invalid_field", f"{where} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise FunctionError(400, "empty_text", f"{where} is empty or only whitespace")
    if len(value) > max_chars():
        raise FunctionError(413, "text_too_long", f"{where} has {len(value)} characters; the limit is {max_chars()}")
    try:
        value.encode("utf-8")  # JSON's "\ud800" decodes to a lone surrogate, which no tokenizer takes
    except UnicodeEncodeError as exc:
        raise FunctionError(400, "invalid_text", f"{where} has an unpaired surrogate at index {exc.start}") from None
    return value


# What `curl -d 'some text' URL` sends: the body is the text itself, not a form.
CURL_DEFAULT_TYPES = ("", "application/x-www-form-urlencoded")


def read_texts(event: Event, allow_batch: bool = True) -> TextRequest:
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
            415,
            "unsupported_media_type",
            f"Content-Type {kind!r} is not supported; send application/json or text/plain",
        )
    payload = request.json_body(event)
    if not isinstance(payload, dict):
        raise FunctionError(400, "invalid_json", f"JSON body must be an object, got {type(payload).__name__}")
    has_text, has_texts = "text" in payload, "texts" in payload
    if not (has_text or has_texts) and isinstance(payload.get("row"), dict) and "op" in payload:
        column = text_field()
        if column not in payload["row"]:
            raise FunctionError(
                400, "missing_field", f"the changed row has no column {column!r} (set TEXT_FIELD to the one with the text)"
            )
        return TextRequest([_check_text(payload["row"][column], f"row.{column}")], False, {})
    if has_texts and not allow_batch:
        raise FunctionError(400, "invalid_field", 'this function takes one text: send {"text": "..."}')
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

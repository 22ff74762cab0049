"""Reading requests under the python3-http template contract (event.body/headers/method/query),
with limits and clear 4xx errors."""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import json
from typing import Any

from .contract import Event
from .errors import FunctionError
from .settings import setting

max_body_bytes = setting("MAX_BODY_BYTES", int, 20 * 1024 * 1024, low=1)


def content_type(event: Event) -> str:
    """The media type alone, lower case ('' when absent)."""
    return (event.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()


def body(event: Event) -> bytes:
    data = event.body or b""
    limit = max_body_bytes()
    if len(data) > limit:
        raise FunctionError(413, "body_too_large", f"request body is {len(data)} bytes; the limit is {limit}")
    return data


def require_method(event: Event, *allowed: str) -> None:
    if event.method not in allowed:
        raise FunctionError(405, "method_not_allowed", f"use {' or '.join(allowed)}, not {event.method}")


def json_body(event: Event) -> Any:
    """The body parsed as JSON (any JSON value); 400 when it is not valid UTF-8 JSON."""
    data = body(event)
    if not data.strip():
        raise FunctionError(400, "empty_body", "the request body is empty")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise FunctionError(400, "invalid_encoding", f"body is not valid UTF-8 (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise FunctionError(
            400, "invalid_json", f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError:  # the decoder recurses per nesting level
        raise FunctionError(400, "invalid_json", "body is nested too deeply") from None


def multipart_file(event: Event, field: str | None = None) -> bytes:
    """The first file part of a multipart/form-data body (or the part named `field`)."""
    data = body(event)
    header = event.headers.get("Content-Type") or ""
    if "boundary=" not in header:
        raise FunctionError(400, "invalid_multipart", "multipart/form-data without a boundary")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + header.encode("latin-1") + b"\r\n\r\n" + data
    )
    parts = list(message.iter_parts()) if message.is_multipart() else []
    for part in parts:
        name = part.get_param("name", header="content-disposition")
        if (field is None and part.get_filename() is not None) or (field is not None and name == field):
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else b""
    raise FunctionError(400, "missing_file", "multipart body has no file part" + (f" named {field!r}" if field else ""))


def base64_field(obj: Any, field: str) -> bytes:
    """Decode `obj[field]`, a base64 string (a data: URL prefix is accepted)."""
    if not isinstance(obj, dict) or field not in obj:
        raise FunctionError(400, "missing_field", f"JSON body must be an object with a {field!r} field")
    value = obj[field]
    if not isinstance(value, str):
        raise FunctionError(400, "invalid_field", f"{field!r} must be a base64 string")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FunctionError(400, "invalid_base64", f"{field!r} is not valid base64: {exc}") from exc


def number_param(event: Event, name: str, default: Any, low: float, high: float, override: Any = None, kind: type = int) -> Any:
    """A number (`kind` int or float) from `override` (e.g. a JSON field) or else the query
    string, within [low, high]; absent or empty gives `default`."""
    raw = override if override is not None else event.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = None if isinstance(raw, bool) else kind(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(1e309), i.e. infinity
        value = None
    if value is None or not low <= value <= high or (kind is int and isinstance(raw, float) and raw != value):
        noun = "an integer" if kind is int else "a number"
        raise FunctionError(400, "invalid_parameter", f"{name} must be {noun} from {low} to {high}, got {raw!r}")
    return value


def int_param(event: Event, name: str, default: int, low: int, high: int, override: Any = None) -> int:
    return number_param(event, name, default, low, high, override, int)

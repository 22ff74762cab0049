"""Parsing and validation of S3 event notifications (AWS format and MinIO's webhook format).

Pure functions, no I/O: the handler turns every record into an `ObjectEvent` or a per-record
`RecordError`, so one malformed record never fails the others.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote_plus

# S3 keys are at most 1024 bytes of UTF-8.
MAX_KEY_BYTES = 1024

# Unicode categories refused in keys: controls, format characters (bidi overrides, zero-width
# characters that make two different keys look identical), surrogates, private use, unassigned.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}


class BadEvent(ValueError):
    """The notification as a whole is unusable (not JSON, no Records list): a 400."""


@dataclass(frozen=True)
class RecordError(Exception):
    code: str
    message: str
    retryable: bool = False  # transient (storage or model server down): worth a redelivery


@dataclass(frozen=True)
class ObjectEvent:
    event_name: str  # without the "s3:" prefix MinIO adds, e.g. "ObjectCreated:Put"
    bucket: str
    key: str  # decoded
    size: int | None
    etag: str  # without quotes; "" when the event carries none
    event_time: str | None

    @property
    def created(self) -> bool:
        return self.event_name.startswith("ObjectCreated:")


def records(payload: object) -> list:
    """The `Records` list of a notification. AWS and MinIO both use it; MinIO adds top-level
    `EventName`/`Key`, and S3's `s3:TestEvent` (sent when a notification is configured) has none."""
    if not isinstance(payload, dict):
        raise BadEvent("the event must be a JSON object with a Records list")
    if payload.get("Event") == "s3:TestEvent" and "Records" not in payload:
        return []
    recs = payload.get("Records")
    if not isinstance(recs, list):
        raise BadEvent("the event has no Records list")
    return recs


# A message naming one object, e.g. on a NATS topic (docs/triggers.md): classify it as if created.
NAMED = "ObjectCreated:Named"


def named_object(payload: dict) -> ObjectEvent:
    """`{"url": "s3://bucket/key"}` -> the object it names (any key of a SOURCE_BUCKETS bucket:
    INPUT_PREFIX scopes bucket notifications, not objects named on purpose)."""
    url = payload.get("url")
    bucket, _, key = url[len("s3://") :].partition("/") if isinstance(url, str) and url.startswith("s3://") else ("", "", "")
    if not bucket or not key:
        raise BadEvent('a message must name one object as {"url": "s3://<bucket>/<key>"}')
    try:
        check_key(key)
    except RecordError as exc:
        raise BadEvent(exc.message) from None
    return ObjectEvent(NAMED, bucket, key, None, "", None)


def parse_record(rec: object) -> ObjectEvent:
    """One record -> ObjectEvent, or RecordError(code='bad_record' | 'unsafe_key')."""
    if not isinstance(rec, dict):
        raise RecordError("bad_record", "record is not an object")
    name = rec.get("eventName")
    if not isinstance(name, str) or not name:
        raise RecordError("bad_record", "record has no eventName")
    name = name.removeprefix("s3:")
    s3 = rec.get("s3")
    if not isinstance(s3, dict):
        raise RecordError("bad_record", "record has no s3 section")
    bucket = (s3.get("bucket") or {}).get("name") if isinstance(s3.get("bucket"), dict) else None
    obj = s3.get("object")
    if not isinstance(bucket, str) or not bucket:
        raise RecordError("bad_record", "record has no s3.bucket.name")
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or not obj["key"]:
        raise RecordError("bad_record", "record has no s3.object.key")
    key = decode_key(obj["key"])
    size = obj.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise RecordError("bad_record", "s3.object.size is not a non-negative integer")
    etag = obj.get("eTag", obj.get("etag", ""))
    if not isinstance(etag, str):
        raise RecordError("bad_record", "s3.object.eTag is not a string")
    event_time = rec.get("eventTime") if isinstance(rec.get("eventTime"), str) else None
    return ObjectEvent(name, bucket, key, size, etag.strip('"'), event_time)


def decode_key(raw: str) -> str:
    """Keys arrive URL-encoded with '+' for spaces (AWS and MinIO alike)."""
    try:
        key = unquote_plus(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise RecordError("unsafe_key", "object key is not valid UTF-8") from None
    check_key(key)
    return key


def check_key(key: str) -> None:
    """Refuse keys that could escape the results prefix or confuse anything path-like downstream.

    Nothing here touches a filesystem (objects are processed in memory), but the result key is
    derived from the source key, and S3-compatible servers differ in how they treat `..`
    segments and leading slashes, so such keys are refused outright rather than normalised."""
    if not key:
        raise RecordError("unsafe_key", "object key is empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise RecordError("unsafe_key", f"object key is longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/") or "\\" in key:
        raise RecordError("unsafe_key", "object key is an absolute path or holds a backslash")
    if any(seg in (".", "..") for seg in key.split("/")):
        raise RecordError("unsafe_key", "object key holds a '.' or '..' path segment")
    for ch in key:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            raise RecordError("unsafe_key", f"object key holds a control or invisible character U+{ord(ch):04X}")

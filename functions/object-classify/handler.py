"""object-classify: an S3-event-triggered image classifier (AWS and MinIO notification formats).

For every ObjectCreated record from a bucket in SOURCE_BUCKETS: fetch the object into memory
(never onto a path derived from the key), classify it with the same preprocessing and Triton
client as image-classify, and write `<RESULTS_PREFIX><bucket>/<key>.json` (to RESULTS_BUCKET,
default the source bucket; the bucket is in the key so two sources never share a result). Each
record gets its own status; a bad record never fails the others. Replays with the same eTag do no
work, concurrent deliveries of one record are serialised by an atomic claim (storage.claim), and
result objects never trigger another classification (prefix guard plus a metadata marker).

Two more inputs, for triggers (docs/triggers.md): a message `{"url": "s3://<bucket>/<key>"}`
naming one object (the `images` topic), classified like a creation event of it; and an empty
POST, as cron-connector sends on schedule: the sweep re-classifies every object under INPUT_PREFIX
that has no result from the model version Triton serves now (a missed event, a new model).

S3 access (configuration, client, fetch, result write) is in storage.py; event parsing in events.py.

Response: 200 when every record reached a final state, 503 + Retry-After when some record hit a
transient failure (S3 or Triton unreachable), so the notifier redelivers; redelivery is cheap
because finished records are recognised by eTag.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from .common import triton
from .common.classify import classify_image, model_name
from .common.errors import FunctionError, call_id, error_document, handler_errors, json_response
from .common.request import json_body, require_method
from .common.result_keys import result_key
from .events import NAMED, BadEvent, ObjectEvent, RecordError, named_object, parse_record, records
from .storage import (
    RESULT_MARKER,
    Settings,
    claim,
    fetch,
    head_result,
    is_precondition_failed,
    list_objects,
    release,
    s3_client,
    s3_error,
    write_result,
)

log = logging.getLogger(__name__)


def _done(result: tuple[str, str] | None, etag: str, version: str | None) -> bool:
    """A result exists for this version of the object (and, when `version` is given, was made by
    that version of the model)."""
    return bool(result and etag and result[0] == etag and (version is None or result[1] == version))


def process(ev: ObjectEvent, cfg: Settings, client, version: str | None = None) -> dict:
    """One parsed record -> its status entry. Raises RecordError for record-level failures.
    `version`: the model version results must come from (the sweep's), else any."""
    out_bucket = cfg.results_bucket or ev.bucket
    out_key = result_key(ev.bucket, ev.key, cfg.results_prefix)
    entry = {"bucket": ev.bucket, "key": ev.key, "etag": ev.etag or None}
    if "*" not in cfg.source_buckets and ev.bucket not in cfg.source_buckets:
        raise RecordError("bucket_not_allowed", f"bucket {ev.bucket!r} is not in SOURCE_BUCKETS")
    if not ev.created:
        return {**entry, "status": "skipped", "reason": f"not an ObjectCreated event ({ev.event_name})"}
    # Retrigger guard: our own results (same bucket and under the results prefix) are never inputs.
    if ev.bucket == out_bucket and ev.key.startswith(cfg.results_prefix) and cfg.results_prefix:
        return {**entry, "status": "skipped", "reason": "result object"}
    if ev.event_name != NAMED and not ev.key.startswith(cfg.input_prefix):
        return {**entry, "status": "skipped", "reason": "outside INPUT_PREFIX"}
    if cfg.input_suffixes and not ev.key.lower().endswith(cfg.input_suffixes):
        return {**entry, "status": "skipped", "reason": "suffix not in INPUT_SUFFIXES"}
    if ev.size is not None and ev.size > cfg.max_object_bytes:
        raise RecordError("too_large", f"object is larger than {cfg.max_object_bytes} bytes")
    if len(out_key.encode("utf-8")) > 1024:
        raise RecordError("unsafe_key", "object key too long for a result key")
    entry["result"] = {"bucket": out_bucket, "key": out_key}

    try:
        done = head_result(client, out_bucket, out_key)
        if _done(done, ev.etag, version):
            return {**entry, "status": "duplicate"}
        data, etag, meta = fetch(client, ev, cfg.max_object_bytes)
    except RecordError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore errors, classified by s3_error
        if is_precondition_failed(exc):
            return {**entry, "status": "skipped", "reason": "object changed since the event"}
        raise s3_error(exc) from None
    if RESULT_MARKER in meta:
        return {**entry, "status": "skipped", "reason": "result object"}
    entry["etag"] = etag or ev.etag or None
    if _done(done, etag, version):
        return {**entry, "status": "duplicate"}

    claim_key = out_key + ".claim"
    try:
        if not claim(client, out_bucket, claim_key, entry["etag"] or "", cfg.claim_ttl_s):
            raise RecordError("in_progress", "another delivery of this object is being classified", retryable=True)
    except RecordError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore errors, classified by s3_error
        raise s3_error(exc) from None
    try:
        # Claimed: a concurrent delivery may have finished between our first look and the claim.
        try:
            if _done(head_result(client, out_bucket, out_key), entry["etag"], version):
                return {**entry, "status": "duplicate"}
        except Exception as exc:  # noqa: BLE001 - botocore errors, classified by s3_error
            raise s3_error(exc) from None
        return {**entry, **classify_and_store(ev, cfg, client, data, out_bucket, out_key, entry["etag"])}
    finally:
        release(client, out_bucket, claim_key)


def classify_and_store(ev: ObjectEvent, cfg: Settings, client, data: bytes, out_bucket: str, result_key: str, etag) -> dict:
    """Classify the fetched object and write its result document; the record's final status."""
    try:
        result = classify_image(data, top_k=cfg.top_k)
    except FunctionError as exc:  # not an image, truncated, too many pixels, Triton down, ...
        raise RecordError(exc.code, exc.message, retryable=exc.status >= 500) from None

    doc = {
        "source": {
            "bucket": ev.bucket,
            "key": ev.key,
            "etag": etag,
            "size": len(data),
            "event_name": ev.event_name,
            "event_time": ev.event_time,
        },
        "model": result.get("model"),
        "model_version": result.get("model_version"),
        "predictions": result.get("predictions", []),
        "classified_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    write_result(client, out_bucket, result_key, doc, etag)
    top = doc["predictions"][0] if doc["predictions"] else None
    return {"status": "classified", "top1": top, "model_version": doc["model_version"]}


def sweep(cfg: Settings) -> tuple[list[ObjectEvent], str]:
    """A scheduled run (cron-connector POSTs no body): every object under INPUT_PREFIX, and the
    version of the model Triton serves now (asked afresh: `sai reload` may have changed it)."""
    model = model_name()
    versions = triton.call(f"metadata of {model}", lambda c: c.get_model_metadata(model))["versions"]
    try:
        objects = list_objects(s3_client(cfg), cfg)
    except Exception as exc:  # noqa: BLE001 - botocore errors, classified by s3_error
        error = s3_error(exc)
        raise FunctionError(503 if error.retryable else 500, error.code, error.message) from None
    return objects, max(versions, key=int)


def raw_key(rec) -> object:
    """The key a record carries, URL-decoded as far as it decodes (for the log, when the record
    was refused before it parsed)."""
    try:
        key = rec["s3"]["object"]["key"]
    except (KeyError, TypeError):
        return None
    return unquote_plus(key, errors="replace") if isinstance(key, str) else key


def shown(value, limit: int = 200) -> str:
    """A key or bucket for a log line: repr (tabs, newlines and escapes stay visible, and cannot
    forge another line), cut to `limit` characters with the full length said."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(value))} characters)"


@handler_errors
def handle(event, context):
    require_method(event, "POST")
    cfg = Settings()
    version = None  # results of any model version count as done, except in a sweep
    if not (event.body or b"").strip():
        recs, version = sweep(cfg)  # re-classify the bucket: what has no result from today's model
    else:
        payload = json_body(event)  # 400 on non-UTF-8 or invalid JSON; 413 over MAX_BODY_BYTES
        try:
            recs = [named_object(payload)] if isinstance(payload, dict) and "url" in payload else records(payload)
        except BadEvent as exc:
            raise FunctionError(400, "bad_event", str(exc)) from None
        if len(recs) > cfg.max_records:
            raise FunctionError(400, "too_many_records", f"at most {cfg.max_records} records per event")

    started = time.perf_counter()
    results = []
    client = None
    retry = False  # some record failed transiently: answer 503 so the notifier redelivers
    for i, rec in enumerate(recs):
        entry: dict = {"index": i}
        try:
            ev = rec if isinstance(rec, ObjectEvent) else parse_record(rec)
            entry.update(bucket=ev.bucket, key=ev.key)
            if client is None:
                client = s3_client(cfg)
            entry.update(process(ev, cfg, client, version))
        except RecordError as exc:
            entry.update(status="error", **error_document(exc.code, exc.message))
            retry = retry or exc.retryable
            bucket, key = entry.get("bucket"), entry.get("key", raw_key(rec))
            log.warning(
                "call %s: record %d not processed (%s): bucket %s key %s: %s",
                call_id(event),
                i,
                exc.code,
                shown(bucket),
                shown(key),
                exc.message,
            )
        except Exception:  # one broken record must not fail the others, nor leak a traceback
            log.exception("call %s: record %d failed", call_id(event), i)
            entry.update(status="error", **error_document("internal_error", "internal error"))
        results.append(entry)

    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    body = {
        "records": results,
        "counts": counts,
        "timings_ms": {"total": round((time.perf_counter() - started) * 1000, 1)},
    }
    return json_response(body, status=503 if retry else 200, headers={"Retry-After": "5"} if retry else None)

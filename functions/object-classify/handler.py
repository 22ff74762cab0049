"""object-classify: an S3-event-triggered image classifier (AWS and MinIO notification formats).

For every ObjectCreated record: fetch the object into memory (never onto a path derived from the
key), classify it with the same preprocessing and Triton client as image-classify, and write
`<RESULTS_PREFIX><key>.json` (to RESULTS_BUCKET, default the source bucket). Each record gets its
own status; a bad record never fails the others. Replays with the same eTag do no work, and
result objects never trigger another classification (prefix guard plus a metadata marker).

Response: 200 when every record reached a final state, 503 + Retry-After when some record hit a
transient failure (S3 or Triton unreachable), so the notifier redelivers; redelivery is cheap
because finished records are recognised by eTag.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import datetime, timezone

from .common.classify import classify_image
from .common.errors import FunctionError, handler_errors, json_response
from .common.request import json_body, require_method
from .events import BadEvent, ObjectEvent, RecordError, parse_record, records

log = logging.getLogger("object-classify")

SECRETS_DIR = "/var/openfaas/secrets"
# Metadata marking our own result objects (explicit retrigger guard, independent of prefixes).
RESULT_MARKER = "sai-result"
SOURCE_ETAG = "source-etag"


class Settings:
    """Configuration, read per call (cheap) so rotated secret files are picked up."""

    def __init__(self, env=os.environ):
        self.endpoint = env.get("S3_ENDPOINT") or None
        self.region = env.get("S3_REGION") or "us-east-1"
        self.access_key = _secret("s3-access-key-id", env, "S3_ACCESS_KEY_ID")
        self.secret_key = _secret("s3-secret-access-key", env, "S3_SECRET_ACCESS_KEY")
        self.results_bucket = env.get("RESULTS_BUCKET") or None  # None: the source bucket
        self.results_prefix = env.get("RESULTS_PREFIX", "results/")
        self.input_prefix = env.get("INPUT_PREFIX", "")
        self.input_suffixes = tuple(
            s.strip().lower() for s in env.get("INPUT_SUFFIXES", "").split(",") if s.strip()
        )
        self.max_object_bytes = _int_env(env, "MAX_OBJECT_BYTES", 20 * 1024 * 1024)
        self.max_records = _int_env(env, "MAX_RECORDS", 100)
        self.top_k = _int_env(env, "TOP_K", 5)


def _secret(name: str, env, env_name: str) -> str | None:
    path = os.path.join(env.get("SECRETS_DIR", SECRETS_DIR), name)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return env.get(env_name) or None


def _int_env(env, name: str, default: int) -> int:
    try:
        return int(env.get(name, default))
    except ValueError:
        return default


_clients: dict = {}
_clients_lock = threading.Lock()


def s3_client(cfg: Settings):
    """One boto3 client per configuration (creating one costs ~50 ms; clients are thread-safe)."""
    key = (cfg.endpoint, cfg.region, cfg.access_key, cfg.secret_key)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=cfg.endpoint,
                region_name=cfg.region,
                aws_access_key_id=cfg.access_key,
                aws_secret_access_key=cfg.secret_key,
                config=Config(
                    connect_timeout=3,
                    read_timeout=20,
                    retries={"max_attempts": 2, "mode": "standard"},
                    s3={"addressing_style": "path"},
                    signature_version="s3v4",
                ),
            )
            _clients[key] = client
    return client


def _s3_error(exc: Exception) -> RecordError:
    """botocore exceptions -> a per-record error with a stable code."""
    from botocore.exceptions import ClientError, NoCredentialsError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, NoCredentialsError):
        return RecordError("access_denied", "no S3 credentials configured")
    if isinstance(exc, BotoConnectionError):
        return RecordError("s3_unavailable", "object storage is unreachable", retryable=True)
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in ("NoSuchKey", "NoSuchBucket", "404") or status == 404:
            return RecordError("not_found", "object or bucket does not exist")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") or status == 403:
            return RecordError("access_denied", "access to the object was denied")
        if status >= 500:
            return RecordError("s3_unavailable", f"object storage answered {status} {code}", retryable=True)
        return RecordError("s3_error", f"object storage answered {status} {code}")
    return RecordError("s3_error", type(exc).__name__)


def _head_result(client, bucket: str, key: str) -> str | None:
    """The source eTag recorded in an existing result object, or None when there is none."""
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise
    return head.get("Metadata", {}).get(SOURCE_ETAG)


def _fetch(client, ev: ObjectEvent, limit: int) -> tuple[bytes, str, dict]:
    """Object bytes (in memory, at most `limit`), its eTag and its user metadata."""
    kwargs = {"Bucket": ev.bucket, "Key": ev.key}
    if ev.etag:
        # Classify the version the event is about; a newer write brings its own event.
        kwargs["IfMatch"] = f'"{ev.etag}"'
    obj = client.get_object(**kwargs)
    body = obj["Body"]
    try:
        if obj.get("ContentLength", 0) > limit:
            raise RecordError("too_large", f"object is larger than {limit} bytes")
        data = body.read(limit + 1)
        if len(data) > limit:
            raise RecordError("too_large", f"object is larger than {limit} bytes")
    finally:
        body.close()
    return data, obj.get("ETag", "").strip('"'), obj.get("Metadata", {})


def process(ev: ObjectEvent, cfg: Settings, client) -> dict:
    """One parsed record -> its status entry. Raises RecordError for record-level failures."""
    out_bucket = cfg.results_bucket or ev.bucket
    result_key = cfg.results_prefix + ev.key + ".json"
    entry = {"bucket": ev.bucket, "key": ev.key, "etag": ev.etag or None}
    if not ev.created:
        return {**entry, "status": "skipped", "reason": f"not an ObjectCreated event ({ev.event_name})"}
    # Retrigger guard: our own results (same bucket and under the results prefix) are never inputs.
    if ev.bucket == out_bucket and ev.key.startswith(cfg.results_prefix) and cfg.results_prefix:
        return {**entry, "status": "skipped", "reason": "result object"}
    if not ev.key.startswith(cfg.input_prefix):
        return {**entry, "status": "skipped", "reason": "outside INPUT_PREFIX"}
    if cfg.input_suffixes and not ev.key.lower().endswith(cfg.input_suffixes):
        return {**entry, "status": "skipped", "reason": "suffix not in INPUT_SUFFIXES"}
    if ev.size is not None and ev.size > cfg.max_object_bytes:
        raise RecordError("too_large", f"object is larger than {cfg.max_object_bytes} bytes")
    if len((result_key).encode("utf-8")) > 1024:
        raise RecordError("unsafe_key", "object key too long for a result key")
    entry["result"] = {"bucket": out_bucket, "key": result_key}

    try:
        done_etag = _head_result(client, out_bucket, result_key)
        if ev.etag and done_etag == ev.etag:
            return {**entry, "status": "duplicate"}
        data, etag, meta = _fetch(client, ev, cfg.max_object_bytes)
    except RecordError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore errors, classified by _s3_error
        if _is_precondition_failed(exc):
            return {**entry, "status": "skipped", "reason": "object changed since the event"}
        raise _s3_error(exc) from None
    if RESULT_MARKER in meta:
        return {**entry, "status": "skipped", "reason": "result object"}
    entry["etag"] = etag or ev.etag or None
    if etag and done_etag == etag:
        return {**entry, "status": "duplicate"}

    try:
        result = classify_image(data, top_k=cfg.top_k)
    except FunctionError as exc:  # not an image, truncated, too many pixels, Triton down, ...
        raise RecordError(exc.code, exc.message, retryable=exc.status >= 500) from None

    doc = {
        "source": {
            "bucket": ev.bucket,
            "key": ev.key,
            "etag": entry["etag"],
            "size": len(data),
            "event_name": ev.event_name,
            "event_time": ev.event_time,
        },
        "model": result.get("model"),
        "model_version": result.get("model_version"),
        "predictions": result.get("predictions", []),
        "classified_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }
    metadata = {RESULT_MARKER: "1"}
    if entry["etag"]:
        metadata[SOURCE_ETAG] = entry["etag"]
    try:
        client.put_object(
            Bucket=out_bucket,
            Key=result_key,
            Body=json.dumps(doc, ensure_ascii=False).encode("utf-8"),
            ContentType="application/json",
            Metadata=metadata,
        )
    except Exception as exc:  # noqa: BLE001 - botocore errors, classified by _s3_error
        raise _s3_error(exc) from None
    top = doc["predictions"][0] if doc["predictions"] else None
    return {**entry, "status": "classified", "top1": top, "model_version": doc["model_version"]}


def _is_precondition_failed(exc: Exception) -> bool:
    resp = getattr(exc, "response", None)
    return isinstance(resp, dict) and resp.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412


@handler_errors
def handle(event, context):
    require_method(event, "POST")
    payload = json_body(event)  # 400 on empty, non-UTF-8 or invalid JSON; 413 over MAX_BODY_BYTES
    cfg = Settings()
    try:
        recs = records(payload)
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
            ev = parse_record(rec)
            entry.update(bucket=ev.bucket, key=ev.key)
            if client is None:
                client = s3_client(cfg)
            entry.update(process(ev, cfg, client))
        except RecordError as exc:
            entry.update(status="error", error={"code": exc.code, "message": exc.message})
            retry = retry or exc.retryable
        except Exception:  # one broken record must not fail the others, nor leak a traceback
            log.exception("record %d failed", i)
            entry.update(status="error", error={"code": "internal", "message": "internal error"})
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

"""object-classify's object storage: its configuration, one boto3 client per configuration, and
the S3 calls the handler makes (read the result marker, claim a record, fetch the object, write
the result), with botocore's errors mapped to per-record `RecordError`s with stable codes.

Credentials come from OpenFaaS secret files (`s3-access-key-id`, `s3-secret-access-key` under
SECRETS_DIR), else from the environment (the local platform has no secret files).
"""

from __future__ import annotations

import json
import os
import threading
import time

from .common.result_keys import RESULTS_PREFIX
from .common.settings import setting
from .events import ObjectEvent, RecordError

SECRETS_DIR = "/var/openfaas/secrets"
# Metadata marking our own result objects (explicit retrigger guard, independent of prefixes).
RESULT_MARKER = "sai-result"
SOURCE_ETAG = "source-etag"
MODEL_VERSION = "model-version"  # of the model that made a result: the nightly sweep redoes older ones


s3_endpoint = setting("S3_ENDPOINT", str, None)  # None: AWS
s3_region = setting("S3_REGION", str, "us-east-1")
results_bucket = setting("RESULTS_BUCKET", str, None)  # None: the source bucket
results_prefix = setting("RESULTS_PREFIX", str, RESULTS_PREFIX, blank_is_unset=False)
# Buckets whose events are classified (comma-separated; "*" = any). Unset: none, so a forged event
# naming another bucket never makes the function read it with its credentials.
source_buckets = setting("SOURCE_BUCKETS", str, "")
# A claim older than this is abandoned (its worker died) and may be taken over.
claim_ttl_s = setting("CLAIM_TTL_S", float, 600.0, low=1.0)
input_prefix = setting("INPUT_PREFIX", str, "", blank_is_unset=False)
input_suffixes = setting("INPUT_SUFFIXES", str, "")  # comma-separated, case-insensitive
max_object_bytes = setting("MAX_OBJECT_BYTES", int, 20 * 1024 * 1024, low=1)
max_records = setting("MAX_RECORDS", int, 100, low=1)
max_sweep_objects = setting("MAX_SWEEP_OBJECTS", int, 1000, low=1)  # objects one scheduled sweep looks at
top_k = setting("TOP_K", int, 5, low=1, high=20)
secrets_dir = setting("SECRETS_DIR", str, SECRETS_DIR)
access_key_id = setting("S3_ACCESS_KEY_ID", str, None)  # when there is no secret file
secret_access_key = setting("S3_SECRET_ACCESS_KEY", str, None)


class Settings:
    """Configuration, read per call (cheap) so rotated secret files are picked up."""

    def __init__(self):
        self.endpoint = s3_endpoint()
        self.region = s3_region()
        self.access_key = _secret("s3-access-key-id", access_key_id)
        self.secret_key = _secret("s3-secret-access-key", secret_access_key)
        self.results_bucket = results_bucket()
        self.results_prefix = results_prefix()
        self.source_buckets = {b.strip() for b in source_buckets().split(",") if b.strip()}
        self.claim_ttl_s = claim_ttl_s()
        self.input_prefix = input_prefix()
        self.input_suffixes = tuple(s.strip().lower() for s in input_suffixes().split(",") if s.strip())
        self.max_object_bytes = max_object_bytes()
        self.max_records = max_records()
        self.max_sweep_objects = max_sweep_objects()
        self.top_k = top_k()


def _secret(name: str, fallback) -> str | None:
    """An OpenFaaS secret file's content, else the `fallback` setting."""
    try:
        with open(os.path.join(secrets_dir(), name), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return fallback()


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


def s3_error(exc: Exception) -> RecordError:
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


def is_precondition_failed(exc: Exception) -> bool:
    """A conditional request lost: If-Match/If-None-Match failed (412), or S3 saw a concurrent
    conditional write (409 ConditionalRequestConflict)."""
    resp = getattr(exc, "response", None)
    return isinstance(resp, dict) and resp.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412)


def head_result(client, bucket: str, key: str) -> tuple[str, str] | None:
    """(source eTag, model version) recorded in an existing result object, None when there is none."""
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise
    meta = head.get("Metadata", {})
    return meta.get(SOURCE_ETAG, ""), meta.get(MODEL_VERSION, "")


def list_objects(client, cfg: Settings) -> list[ObjectEvent]:
    """Every object under INPUT_PREFIX of the SOURCE_BUCKETS (named ones; "*" lists none), at most
    MAX_SWEEP_OBJECTS, as events of the scheduled sweep."""
    found: list[ObjectEvent] = []
    for bucket in sorted(b for b in cfg.source_buckets if b != "*"):
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=cfg.input_prefix)
        for obj in (o for page in pages for o in page.get("Contents", [])):
            if len(found) >= cfg.max_sweep_objects:
                return found
            found.append(ObjectEvent("ObjectCreated:Sweep", bucket, obj["Key"], obj["Size"], obj["ETag"].strip('"'), None))
    return found


def claim(client, bucket: str, key: str, source_etag: str, ttl_s: float) -> bool:
    """Atomically claim one record (this result key, this source version) so that concurrent
    deliveries of the same event classify it once: a conditional put that only one writer wins
    (If-None-Match: *, which AWS S3, MinIO and moto's server honour). A claim left by a worker that
    died is taken over after `ttl_s`, by compare-and-swap on its eTag (If-Match). False: another
    delivery holds it."""
    from botocore.exceptions import ClientError

    body = json.dumps({"source_etag": source_etag, "at": time.time()}).encode()
    put = {"Bucket": bucket, "Key": key, "Body": body, "Metadata": {RESULT_MARKER: "claim"}}
    try:
        client.put_object(**put, IfNoneMatch="*")
        return True
    except ClientError as exc:
        if not is_precondition_failed(exc):
            raise
    try:
        held = client.get_object(Bucket=bucket, Key=key)
        current = json.loads(held["Body"].read())
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return False  # released meanwhile: the holder finished; the caller retries later
        raise
    if current.get("source_etag") == source_etag and time.time() - float(current.get("at", 0)) < ttl_s:
        return False
    try:  # stale, or for an older version of the object: take it over, if nobody else did first
        client.put_object(**put, IfMatch=held["ETag"])
        return True
    except ClientError as exc:
        if is_precondition_failed(exc):
            return False
        raise


def release(client, bucket: str, key: str) -> None:
    """Drop a claim once its result is written (best effort: an orphan only expires)."""
    try:
        client.delete_object(Bucket=bucket, Key=key)
    except Exception:  # noqa: BLE001 - a leftover claim is harmless: the result is already there
        pass


def fetch(client, ev: ObjectEvent, limit: int) -> tuple[bytes, str, dict]:
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


def write_result(client, bucket: str, key: str, doc: dict, source_etag: str | None) -> None:
    """Store the result document, marked as ours (never an input) and with the source's eTag and
    the model version (replays of the same version are then recognised by `head_result`)."""
    metadata = {RESULT_MARKER: "1", MODEL_VERSION: str(doc.get("model_version") or "")}
    if source_etag:
        metadata[SOURCE_ETAG] = source_etag
    try:
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(doc, ensure_ascii=False).encode("utf-8"),
            ContentType="application/json",
            Metadata=metadata,
        )
    except Exception as exc:  # noqa: BLE001 - botocore errors, classified by s3_error
        raise s3_error(exc) from None

"""S3 bucket notifications for the local S3 server, built and delivered as MinIO's webhook
target does, since moto sends none itself.

On a cluster, MinIO posts each upload's event to object-classify. With a queue directory
(`MINIO_NOTIFY_WEBHOOK_QUEUE_DIR`) it stores the event first, waits at most 60 s for the
response headers, counts only a 2xx as delivered, and otherwise retries the same event every 3 s,
in order, until one comes (minio RELEASE.2025-04-22T22-12-26Z: internal/event/target/webhook.go,
internal/store). That is at-least-once delivery; object-classify makes it classify-once by
recognising a result it already wrote for the same eTag.

Locally, the platform's `Watcher` sees each new object under object-classify's INPUT_PREFIX,
whoever uploaded it (boto3, `aws s3 cp`, `sai s3 upload`), and queues its event (`enqueue`); its
`Notifier` delivers with the same rules: one JSON file per event in `<state>/s3-events/`, oldest
first, removed only after a 2xx.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import requests

from sai.local.s3_server import ACCESS_KEY


def minio_event(bucket: str, key: str, size: int, etag: str, event_name: str = "s3:ObjectCreated:Put") -> dict:
    """An S3 event notification as MinIO's webhook target sends it (key URL-encoded)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    enc_key = urllib.parse.quote_plus(key, safe="")  # url.QueryEscape, as MinIO does
    return {
        "EventName": event_name,
        "Key": f"{bucket}/{key}",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "awsRegion": "",
                "eventTime": now,
                "eventName": event_name,
                "userIdentity": {"principalId": ACCESS_KEY},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "Config",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": ACCESS_KEY},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": enc_key,
                        "size": size,
                        "eTag": etag.strip('"'),
                        "contentType": "application/octet-stream",
                        "sequencer": f"{time.time_ns():X}",
                    },
                },
                "source": {"host": "127.0.0.1", "port": "", "userAgent": "sai"},
            }
        ],
    }


# ---------------------------------------------------------------- delivery

log = logging.getLogger(__name__)

# MinIO's webhook target: ResponseHeaderTimeout 1 minute, dial timeout 5 s, retry every 3 s.
RESPONSE_HEADER_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 5.0
RETRY_INTERVAL_S = 3.0


def queue_dir(state_dir: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(state_dir) / "s3-events"


def enqueue(state_dir: pathlib.Path, event: dict) -> pathlib.Path:
    """Store one event for delivery (atomically: the notifier never sees half a file)."""
    folder = queue_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # Names sort in arrival order: delivery is in order, as MinIO's.
    path = folder / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(event))
    os.replace(tmp, path)
    return path


def pending(state_dir: pathlib.Path) -> list[pathlib.Path]:
    return sorted(queue_dir(state_dir).glob("*.json"))


class _Loop:
    """A daemon thread running `_run` until `stop()` (which `_run` sees through `self._stop`)."""

    name = "loop"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        raise NotImplementedError


class Notifier(_Loop):
    """Delivers queued events to `url` on a background thread until `stop()`."""

    name = "s3-events"

    def __init__(
        self,
        state_dir: pathlib.Path,
        url: str,
        header_timeout_s: float = RESPONSE_HEADER_TIMEOUT_S,
        retry_interval_s: float = RETRY_INTERVAL_S,
        auth: tuple[str, str] | None = None,
    ):
        super().__init__()
        self.state_dir, self.url = pathlib.Path(state_dir), url
        self.header_timeout_s, self.retry_interval_s = header_timeout_s, retry_interval_s
        self.delivered = 0
        self.failed_attempts = 0
        self.last_error: str | None = None
        self._session = requests.Session()
        self._session.auth = auth  # the gateway's basic auth, when it guards /function/*

    def status(self) -> dict:
        """For the state file (`sai status`): what waits, what went, the last failure."""
        return {
            "queued": len(pending(self.state_dir)),
            "delivered": self.delivered,
            "failed_attempts": self.failed_attempts,
            "last_error": self.last_error,
        }

    def start(self) -> None:
        queue_dir(self.state_dir).mkdir(parents=True, exist_ok=True)
        super().start()

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self._session.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            events = pending(self.state_dir)
            if not events:
                self._stop.wait(0.2)
                continue
            if not self.deliver(events[0]):
                self._stop.wait(self.retry_interval_s)  # the same event again: in order, like MinIO

    def deliver(self, path: pathlib.Path) -> bool:
        """One attempt for one queued event; True (and the file removed) on a 2xx."""
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            return True
        try:
            resp = self._session.post(
                self.url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=(CONNECT_TIMEOUT_S, self.header_timeout_s),
            )
            ok, error = 200 <= resp.status_code < 300, f"answered {resp.status_code}"
        except requests.RequestException as exc:
            ok, error = False, f"{type(exc).__name__}"
        if ok:
            path.unlink(missing_ok=True)
            self.delivered += 1
            log.info("S3 event %s delivered to %s", path.name, self.url)
            return True
        self.failed_attempts += 1
        self.last_error = error
        log.warning("S3 event %s: %s %s; retrying in %.0fs", path.name, self.url, error, self.retry_interval_s)
        return False


class Watcher(_Loop):
    """Queues an event for every object that appears (or changes) under `prefix`, as MinIO does on
    each PUT: moto sends no notifications. It lists the bucket every `interval` seconds; objects
    already there when it starts count as seen (MinIO notifies new writes only)."""

    name = "s3-watcher"

    def __init__(
        self, state_dir: pathlib.Path, client: Any, bucket: str, prefix: str = "", skip_prefix: str = "", interval: float = 0.5
    ):
        super().__init__()
        self.state_dir, self.client, self.bucket = pathlib.Path(state_dir), client, bucket
        self.prefix, self.skip_prefix, self.interval = prefix, skip_prefix, interval
        self.seen: dict[str, str] = {}

    def start(self) -> None:
        self.seen = {key: etag for key, etag, _ in self._listing()}
        super().start()

    def _listing(self) -> Iterator[tuple[str, str, int]]:
        """(key, eTag, size) of every object under the prefix (results excluded)."""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                if self.skip_prefix and obj["Key"].startswith(self.skip_prefix):
                    continue
                yield obj["Key"], obj["ETag"].strip('"'), obj["Size"]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.scan()
            except Exception as exc:  # noqa: BLE001 - S3 restarting: keep watching
                log.warning("S3 watcher: listing %s failed: %s", self.bucket, exc)

    def scan(self) -> int:
        """Queue events for what is new since the last scan; how many."""
        count = 0
        for key, etag, size in self._listing():
            if self.seen.get(key) != etag:
                enqueue(self.state_dir, minio_event(self.bucket, key, size, etag))  # stored first,
                self.seen[key] = etag  # then remembered: a crash in between only re-sends it
                count += 1
        return count

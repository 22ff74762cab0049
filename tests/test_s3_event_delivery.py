"""An upload made while Triton is down is classified exactly once when Triton returns.

The local platform notifies object-classify of every new object under its INPUT_PREFIX, from any
S3 client, with MinIO's webhook rules (sai/local/s3_events.py): stored first, redelivered until a
2xx. object-classify answers 503 while Triton is down (after
TRITON_TIMEOUT_S, no retry after a timeout), so the event waits; once Triton is back the next
delivery classifies it, and any later redelivery finds the result for the same eTag. Here the
notifier's timings are shortened (MinIO: 60 s header timeout, 3 s retry) and the bucket is
versioned, so every result write would show as a version.

Runs on a platform of its own: it stops Triton.
"""

from __future__ import annotations

import json

import pytest
from helpers import running_platform

from common.result_keys import result_key
from sai.local import s3_events, s3_server
from sai.local.processes import wait_until
from sai.state import free_port

pytestmark = pytest.mark.slow

KEY = "incoming/outage/coffee.jpg"


def test_upload_during_an_outage_is_classified_once(tmp_path_factory, coffee_jpeg):
    state = tmp_path_factory.mktemp("sai-events")
    with running_platform(
        state,
        only=["object-classify"],
        with_s3=True,
        s3_port=free_port(),
        s3_event_timeout_s=2.0,
        s3_event_retry_s=0.5,
        function_env={"object-classify": {"TRITON_TIMEOUT_S": "1", "TRITON_RETRIES": "1"}},
    ) as platform:
        client, bucket = platform.s3.client(), platform.s3.bucket
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        notifier = platform.s3_notifier
        result = result_key(bucket, KEY)

        def result_versions() -> list:  # every write of the result (its claim objects aside)
            listing = client.list_object_versions(Bucket=bucket, Prefix=result)
            return [v for v in listing.get("Versions", []) if v["Key"] == result]

        platform.triton.stop()
        try:
            # A plain boto3 upload: the platform notices it and queues its event, as MinIO would.
            client.put_object(Bucket=bucket, Key=KEY, Body=coffee_jpeg)
            # Longer than the notifier's timeout, with several failed deliveries.
            assert wait_until(lambda: notifier.failed_attempts >= 3, 30)
            assert len(s3_events.pending(state)) == 1
            assert result_versions() == []
        finally:
            platform.triton.start()

        # Triton is back: the next redelivery classifies the upload.
        assert wait_until(lambda: not s3_events.pending(state), 60), notifier.status()
        doc = json.loads(client.get_object(Bucket=bucket, Key=result)["Body"].read())
        assert doc["predictions"][0]["label"] == "espresso"
        assert len(result_versions()) == 1

        # MinIO may deliver an event again (at-least-once): no second classification.
        delivered = notifier.delivered
        event = s3_events.minio_event(bucket, KEY, len(coffee_jpeg), doc["source"]["etag"])
        s3_events.enqueue(state, event)
        assert wait_until(lambda: notifier.delivered > delivered and not s3_events.pending(state), 30)
        assert len(result_versions()) == 1
        assert platform.s3_notifier.status()["queued"] == 0


def test_watcher_queues_each_new_object_once(tmp_path):
    """What counts as an upload: new or rewritten objects under the prefix, from any client;
    not what was there before, not other prefixes."""
    handle = s3_server.start_s3(tmp_path / "s3", free_port())
    try:
        client, bucket = handle.client(), handle.bucket
        client.put_object(Bucket=bucket, Key="incoming/before.jpg", Body=b"old")
        watcher = s3_events.Watcher(tmp_path, client, bucket, prefix="incoming/", skip_prefix="results/")
        watcher.seen = {key: etag for key, etag, _ in watcher._listing()}  # what start() does, without the thread
        assert watcher.scan() == 0  # there before the watcher: MinIO would not notify it
        etag = client.put_object(Bucket=bucket, Key="incoming/new.jpg", Body=b"one")["ETag"].strip('"')
        client.put_object(Bucket=bucket, Key="other/x.jpg", Body=b"x")
        assert watcher.scan() == 1 and watcher.scan() == 0
        (queued,) = s3_events.pending(tmp_path)
        record = json.loads(queued.read_text())["Records"][0]
        assert (record["s3"]["object"]["key"], record["s3"]["object"]["eTag"]) == ("incoming%2Fnew.jpg", etag)
        client.put_object(Bucket=bucket, Key="incoming/new.jpg", Body=b"two")  # a new version: a new event
        assert watcher.scan() == 1 and len(s3_events.pending(tmp_path)) == 2
    finally:
        s3_server.stop_s3(handle)

"""An upload made while Triton is down is classified exactly once when Triton returns.

The local platform delivers bucket events with MinIO's webhook rules (sai/local/s3_events.py):
stored first, redelivered until a 2xx. object-classify answers 503 while Triton is down (after
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

from sai.cli import main
from sai.local import s3_events
from sai.local.processes import wait_until
from sai.state import free_port

pytestmark = pytest.mark.slow

KEY = "incoming/outage/coffee.jpg"
RESULT = "results/" + KEY + ".json"


def test_upload_during_an_outage_is_classified_once(tmp_path_factory, tmp_path, coffee_jpeg, capsys):
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
        img = tmp_path / "coffee.jpg"
        img.write_bytes(coffee_jpeg)

        platform.stop_triton()
        try:
            # Not classified while Triton is down: exit 1, the event still queued.
            assert main(["s3", "upload", str(img), "--key", KEY, "--state-dir", str(state), "--timeout", "3"]) == 1
            assert "stays queued" in capsys.readouterr().err
            # Longer than the notifier's timeout, with several failed deliveries.
            assert wait_until(lambda: notifier.failed_attempts >= 3, 30)
            assert len(s3_events.pending(state)) == 1
            assert "Versions" not in client.list_object_versions(Bucket=bucket, Prefix=RESULT)
        finally:
            platform.start_triton()

        # Triton is back: the next redelivery classifies the upload.
        assert wait_until(lambda: not s3_events.pending(state), 60), notifier.status()
        doc = json.loads(client.get_object(Bucket=bucket, Key=RESULT)["Body"].read())
        assert doc["predictions"][0]["label"] == "espresso"
        assert len(client.list_object_versions(Bucket=bucket, Prefix=RESULT)["Versions"]) == 1

        # MinIO may deliver an event again (at-least-once): no second classification.
        delivered = notifier.delivered
        event = s3_events.minio_event(bucket, KEY, len(coffee_jpeg), doc["source"]["etag"])
        s3_events.enqueue(state, event)
        assert wait_until(lambda: notifier.delivered > delivered and not s3_events.pending(state), 30)
        assert len(client.list_object_versions(Bucket=bucket, Prefix=RESULT)["Versions"]) == 1
        assert platform.s3_notifier.status()["queued"] == 0

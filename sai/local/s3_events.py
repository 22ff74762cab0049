"""S3 bucket notifications as MinIO's webhook target sends them: what `sai s3 upload` posts to
object-classify after an upload, since the local S3 server (moto) sends none itself."""

from __future__ import annotations

import time
import urllib.parse

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

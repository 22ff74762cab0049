"""The README's three trigger examples on the real platform (Triton with the real models, the
local S3 server, stack.yml's functions): a message naming an image, a nightly re-classification
deployed with a schedule, sentiment for each row inserted into a `reviews` table."""

from __future__ import annotations

import json
import logging
import os
import re
import uuid

import psycopg
import pytest
import requests
from postgres_server import missing, postgres_server
from test_triggers import sai

from common.result_keys import result_key
from sai.local.processes import wait_until


@pytest.fixture(scope="module")
def env(platform):
    if not platform.triggers.nats_url:
        missing(f"nats-server ({platform.triggers.nats_error})")
    return {**os.environ, "SAI_STATE_DIR": str(platform.settings.state_dir)}


def result(platform, key: str) -> dict | None:
    try:
        obj = platform.s3.client().get_object(Bucket=platform.s3.bucket, Key=result_key(platform.s3.bucket, key))
    except Exception:  # noqa: BLE001 - not there (yet)
        return None
    return json.loads(obj["Body"].read())


def test_publish_a_message_naming_an_image(platform, env, cat_jpeg, tmp_path):
    key = f"photos/cat-{uuid.uuid4().hex[:8]}.jpg"  # outside incoming/: no bucket event for it
    (tmp_path / "cat.jpg").write_bytes(cat_jpeg)
    out = sai("s3", "upload", str(tmp_path / "cat.jpg"), "--key", key, env=env)
    assert out.returncode == 0 and "so no event" in out.stdout, out.stderr
    out = sai("publish", "images", json.dumps({"url": f"s3://{platform.s3.bucket}/{key}"}), env=env)
    assert out.returncode == 0, out.stderr
    doc = wait_until(lambda: result(platform, key), 60)
    assert doc and "cat" in doc["predictions"][0]["label"], doc


def test_nightly_reclassification_runs_on_its_schedule(platform, env, coffee_jpeg):
    """The README deploys object-classify a second time with a schedule; here it fires every second."""
    client, bucket = platform.s3.client(), platform.s3.bucket
    key = f"incoming/nightly-{uuid.uuid4().hex[:8]}.jpg"
    client.put_object(Bucket=bucket, Key=key, Body=coffee_jpeg)
    assert wait_until(lambda: result(platform, key), 60)  # classified on upload (the bucket event)
    client.delete_object(Bucket=bucket, Key=result_key(bucket, key))  # lost: the sweep redoes it
    deploy = {
        "service": "uploads-nightly",
        "image": "object-classify",
        "annotations": {"topic": "cron-function", "schedule": "@every 1s"},
    }
    url = f"{platform.gateway_url}/system/functions"
    assert requests.post(url, json=deploy, auth=platform.credentials, timeout=60).status_code == 202
    try:
        doc = wait_until(lambda: result(platform, key), 60)
        assert doc and doc["predictions"][0]["label"] == "espresso"
        # the result is written before the answer, which the gateway counts once it is sent
        assert wait_until(lambda: platform.gateway.metrics.invocations("uploads-nightly") >= 1, 10)
    finally:
        requests.delete(url, json={"functionName": "uploads-nightly"}, auth=platform.credentials, timeout=60)


def test_each_inserted_review_gets_its_sentiment(platform, env, caplog):
    caplog.set_level(logging.INFO, logger="sai.local.triggers.topics")
    with postgres_server() as dsn:
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute("CREATE TABLE reviews (id serial PRIMARY KEY, text text NOT NULL)")
            out = sai("db", "watch", dsn, "reviews", "--topic", "reviews", env=env)
            assert out.returncode == 0, out.stderr
            try:
                db.execute(
                    "INSERT INTO reviews (text) VALUES ('What a wonderful phone, I love it!'), ('Awful. It broke in a day.')"
                )

                def answers() -> list[str]:
                    lines = [r.getMessage() for r in caplog.records if "-> text-sentiment" in r.getMessage()]
                    return [m.group(1) for line in lines if (m := re.search(r'"label": ?"(\w+)"', line))]

                assert wait_until(lambda: len(answers()) >= 2, 60), [r.getMessage() for r in caplog.records]
                assert sorted(answers()) == ["negative", "positive"]
            finally:
                sai("db", "unwatch", dsn, "reviews", "--topic", "reviews", env=env)

"""Triggers with real processes: a platform (gateway, function processes, nats-server with
JetStream, no Triton: these functions do not call it) whose functions are bound to a cron
schedule, to message topics and to a PostgreSQL table (a real server started here). The test
function (tests/data/recorder) writes one file per call, so each invocation can be counted."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import requests
import yaml
from helpers import running_platform
from postgres_server import missing, postgres_server

from sai.local.processes import wait_until
from sai.local.triggers import topics
from sai.local.triggers.runtime import TriggerSettings
from sai.local.triggers.topics import NatsUnavailable, nats_binary
from sai.state import free_port

RECORDER = Path(__file__).parent / "data" / "recorder"
MAX_ATTEMPTS = 3

# name -> (annotations, environment)
FUNCTIONS = {
    "recorder": ({"topic": "orders, orders.eu"}, {}),
    "flaky": ({"topic": "flaky"}, {"FAIL_TIMES": "2"}),
    "broken": ({"topic": "broken"}, {"FAIL_TIMES": "100"}),
    "ticker": ({"topic": "cron-function", "schedule": "@every 1s"}, {}),
    "rows": ({"topic": "reviews"}, {}),
}


def write_stack(folder: Path, functions: dict) -> Path:
    """A stack.yml whose functions all run tests/data/recorder, each recording in folder/<name>."""
    doc = {"version": 1.0, "provider": {"name": "openfaas"}, "functions": {}}
    for name, (notes, env) in functions.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        doc["functions"][name] = {
            "handler": str(RECORDER),
            "environment": {"RECORD_DIR": str(folder / name), **env},
            "annotations": notes,
        }
    path = folder / "stack.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def calls(folder: Path) -> list[dict]:
    """The recorded calls of one function, oldest first."""
    found = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return sorted(found, key=lambda r: r["at"])


def sai(*args, env, timeout=60, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "sai", *args], env=env, capture_output=True, text=True, timeout=timeout, input=stdin
    )


@pytest.fixture(scope="module")
def bound(tmp_path_factory):
    """The platform, the folder of each function's records, and an env for the `sai` CLI."""
    try:
        nats_binary()
    except NatsUnavailable:
        missing("nats-server")
    folder = tmp_path_factory.mktemp("triggers")
    settings = TriggerSettings(
        nats_port=free_port(), rebuild_s=0.3, ack_wait_s=5, max_attempts=MAX_ATTEMPTS, retry_first_s=0.2, retry_max_s=0.5
    )
    state = folder / "state"
    stack = write_stack(folder, FUNCTIONS)
    with running_platform(state, stack_file=stack, triton_url="127.0.0.1:9", triggers=settings) as platform:
        platform.records = folder
        platform.env = {**os.environ, "SAI_STATE_DIR": str(state)}
        yield platform


def publish(platform, topic: str, *messages: bytes) -> list[int]:
    async def send():
        nc = await topics.connect(platform.triggers.nats_url, platform.triggers.server.token(), "test")
        try:
            return [await topics.publish(nc.jetstream(), topic, m) for m in messages]
        finally:
            await nc.close()

    return asyncio.run(send())


def test_each_message_invokes_each_subscriber_once(bound):
    """Messages on two topics of one function: each is one call, with the message as its body and
    connector-sdk's headers (X-Topic, X-Connector), through the gateway; none twice."""
    sent = [json.dumps({"order": i}).encode() for i in range(6)]
    publish(bound, "orders", *sent[:4])
    out = sai("publish", "orders.eu", sent[4].decode(), env=bound.env)
    assert out.returncode == 0, out.stderr
    assert "published" in out.stdout
    out = sai("publish", "orders.eu", env=bound.env, stdin=sent[5].decode())
    assert out.returncode == 0, out.stderr
    folder = bound.records / "recorder"
    assert wait_until(lambda: len(calls(folder)) >= 6, 20), calls(folder)
    time.sleep(1.0)  # a duplicate would arrive now
    got = calls(folder)
    assert sorted(c["body"] for c in got) == sorted(m.decode() for m in sent)
    topics_seen = [c["headers"]["X-Topic"] for c in got]
    assert topics_seen.count("orders") == 4 and topics_seen.count("orders.eu") == 2
    assert {c["headers"]["X-Connector"] for c in got} == {"connector-sdk"}
    assert {c["headers"]["Content-Type"] for c in got} == {None}  # nats-connector sets none
    assert bound.gateway.metrics.invocations("recorder") == 6  # through the gateway, counted there


def test_a_503_is_retried_then_succeeds(bound):
    counts = bound.triggers.topics.counts
    before = dict(counts)
    publish(bound, "flaky", b'{"job": 1}')
    folder = bound.records / "flaky"
    assert wait_until(lambda: len(calls(folder)) >= 3, 20), calls(folder)
    time.sleep(1.0)
    assert [c["attempt"] for c in calls(folder)] == [1, 2, 3]  # 503, 503, then 200: not sent again
    assert counts["retried"] - before.get("retried", 0) == 2 and counts["delivered"] - before.get("delivered", 0) == 1


def test_retries_are_bounded(bound):
    publish(bound, "broken", b'{"job": "never"}')
    folder = bound.records / "broken"
    assert wait_until(lambda: bound.triggers.topics.counts["failed"] >= 1, 20)
    time.sleep(1.5)
    assert len(calls(folder)) == MAX_ATTEMPTS
    assert "topic broken" in bound.triggers.topics.last_error and ": 503 in" in bound.triggers.topics.last_error


def test_schedule_invokes_through_the_gateway(bound):
    folder = bound.records / "ticker"
    assert wait_until(lambda: len(calls(folder)) >= 2, 10), calls(folder)
    got = calls(folder)
    assert {c["body"] for c in got} == {""}
    assert {(c["headers"]["X-Topic"], c["headers"]["X-Connector"]) for c in got} == {("cron-function", "cron-connector")}
    assert wait_until(lambda: bound.gateway.metrics.invocations("ticker") >= 2, 10)  # counted once answered
    out = sai("status", "--json", env=bound.env)
    assert json.loads(out.stdout)["triggers"]["cron"]["ticker"]["schedule"] == "@every 1s"


def _deploy(bound, body: dict, method: str = "POST") -> requests.Response:
    return requests.request(method, f"{bound.gateway_url}/system/functions", json=body, auth=bound.credentials, timeout=30)


@pytest.mark.parametrize(
    ("notes", "says"),
    [
        ({"topic": "cron-function", "schedule": "61 * * * *"}, "outside 0-59"),
        ({"topic": "cron-function", "schedule": "every night"}, "expected exactly 5 fields"),
        ({"topic": "cron-function"}, "needs a schedule"),
        ({"topic": "images", "schedule": "0 3 * * *"}, "needs topic='cron-function'"),
        ({"topic": " , "}, "names no topic"),
        ({"topic": "orders.*"}, "wildcards"),
        ({"topic": "cron-function", "schedule": "TZ=Europe/Paris 0 3 * * *"}, "UTC"),
    ],
)
def test_bad_annotations_are_refused_at_deploy(bound, notes, says):
    resp = _deploy(bound, {"service": "bad-trigger", "image": "recorder", "annotations": notes})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "invalid_annotation" and says in error["message"], error


def test_a_deployed_function_subscribes_and_a_removed_one_stops(bound):
    assert _deploy(bound, {"service": "late", "image": "recorder", "annotations": {"topic": "late"}}).status_code == 202
    # the connector reads the function list every rebuild_s: the topic exists once it did
    assert wait_until(lambda: ("late", "late") in bound.triggers.topics.loops, 10)
    publish(bound, "late", b"hello late")
    folder = bound.records / "recorder"  # `late` runs recorder's code and environment
    assert wait_until(lambda: any(c["body"] == "hello late" for c in calls(folder)), 10)
    resp = requests.delete(
        f"{bound.gateway_url}/system/functions", json={"functionName": "late"}, auth=bound.credentials, timeout=30
    )
    assert resp.status_code == 200
    assert wait_until(lambda: "late" not in bound.triggers.topics.subjects, 10)
    out = sai("publish", "late", "anyone?", env=bound.env)
    assert out.returncode == 1 and "no function subscribes to topic 'late'" in out.stderr


def test_publish_refuses_bad_input(bound):
    out = sai("publish", "two words", "x", env=bound.env)
    assert out.returncode == 2 and "not a NATS subject" in out.stderr
    out = sai("publish", "nobody.listens", "x", env=bound.env)
    assert out.returncode == 1 and "no function subscribes" in out.stderr


def test_inserted_rows_invoke_the_function_with_the_row(bound):
    with postgres_server() as dsn:
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute("CREATE TABLE reviews (id serial PRIMARY KEY, text text NOT NULL, stars int)")
            out = sai("db", "watch", dsn, "reviews", "--topic", "reviews", env=bound.env)
            assert out.returncode == 0, out.stderr
            db.execute("INSERT INTO reviews (text, stars) VALUES ('Great phone', 5), ('Battery died', 1)")
            with db.transaction(force_rollback=True):  # never committed: never a message
                db.execute("INSERT INTO reviews (text, stars) VALUES ('rolled back', 3)")
            db.execute("UPDATE reviews SET stars = 4 WHERE id = 1")  # only INSERT is watched
            folder = bound.records / "rows"
            assert wait_until(lambda: len(calls(folder)) >= 2, 20), calls(folder)
            time.sleep(1.0)
            bodies = [json.loads(c["body"]) for c in calls(folder)]
            assert [b["row"]["text"] for b in bodies] == ["Great phone", "Battery died"]
            assert bodies[0] == {
                "table": "reviews",
                "schema": "public",
                "op": "INSERT",
                "row": {"id": 1, "text": "Great phone", "stars": 5},
            }
            assert db.execute("SELECT count(*) FROM sai.outbox").fetchone() == (0,)  # relayed, then deleted
            out = sai("db", "unwatch", dsn, "reviews", "--topic", "reviews", env=bound.env)
            assert out.returncode == 0, out.stderr
            db.execute("INSERT INTO reviews (text) VALUES ('after unwatch')")
            assert db.execute("SELECT count(*) FROM sai.outbox").fetchone() == (0,)


def test_db_watch_refuses_bad_input(bound):
    out = sai("db", "watch", "postgresql://nobody@127.0.0.1:9/none", "a.b.c", "--topic", "x", env=bound.env)
    assert out.returncode == 2 and "SCHEMA.NAME" in out.stderr
    out = sai("db", "watch", "postgresql://nobody@127.0.0.1:9/none", "t", "--topic", "x", "--on", "truncate", env=bound.env)
    assert out.returncode == 2 and "insert, update, delete" in out.stderr
    out = sai("db", "watch", "postgresql://nobody@127.0.0.1:9/none", "t", "--topic", "x", env=bound.env)
    assert out.returncode == 1 and "could not install the trigger" in out.stderr


def test_the_gateway_adds_no_content_type(bound):
    """A body sent without Content-Type reaches the function without one, as through OpenFaaS's
    gateway (a Go reverse proxy); aiohttp alone would label it application/octet-stream."""
    resp = requests.post(f"{bound.gateway_url}/function/rows", data=b"untyped body", timeout=30)
    assert resp.status_code == 200
    got = [c for c in calls(bound.records / "rows") if c["body"] == "untyped body"]
    assert len(got) == 1 and got[0]["headers"]["Content-Type"] is None

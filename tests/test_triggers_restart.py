"""Nothing is lost across a kill -9 of the platform: a message in flight is delivered again, the
ones still queued are delivered after the restart, and a row inserted while the platform is down
waits in the outbox and becomes a message once it is back. The platform runs as its own process
(the supervisor `sai up` starts), killed with SIGKILL: its children (functions, nats-server) die
with it."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys

import psycopg
import pytest
from postgres_server import missing, postgres_server
from test_triggers import calls, sai, write_stack

from sai.local.processes import wait_until
from sai.local.triggers import topics
from sai.local.triggers.topics import NatsUnavailable, nats_binary
from sai.state import free_port, read_state

pytestmark = pytest.mark.slow

SUPERVISOR = """
import json, logging, pathlib, sys
from sai.cli.lifecycle import _foreground
from sai.local.platform import Settings
from sai.local.triggers.runtime import TriggerSettings
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
cfg = json.loads(sys.argv[1])
triggers = TriggerSettings(**cfg.pop("triggers"))
paths = {k: pathlib.Path(cfg.pop(k)) for k in ("state_dir", "stack_file")}
sys.exit(_foreground(Settings(**cfg, **paths, triggers=triggers)))
"""


def publish(triggers: dict, topic: str, *messages: bytes) -> None:
    """Publish at once (the CLI takes a second a message) to the broker of the state file."""

    async def send():
        token = pathlib.Path(triggers["nats_token"]).read_text().strip()
        nc = await topics.connect(triggers["nats"], token, "test")
        try:
            for m in messages:
                await topics.publish(nc.jetstream(), topic, m)
        finally:
            await nc.close()

    asyncio.run(send())


def test_kill_9_loses_nothing(tmp_path):
    try:
        nats_binary()
    except NatsUnavailable:
        missing("nats-server")
    functions = {"worker": ({"topic": "jobs"}, {"SLOW_S": "1.5"}), "rows": ({"topic": "reviews"}, {})}
    stack = write_stack(tmp_path, functions)
    state = tmp_path / "state"
    cfg = {
        "state_dir": str(state),
        "stack_file": str(stack),
        "triton_url": "127.0.0.1:9",
        "port": free_port(),
        "triggers": {"nats_port": free_port(), "rebuild_s": 0.3, "ack_wait_s": 2.0},
    }
    env = {**os.environ, "SAI_STATE_DIR": str(state)}

    def start() -> subprocess.Popen:
        log = open(tmp_path / "supervisor.log", "ab")  # noqa: SIM115 - the child holds it
        proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, json.dumps(cfg)], stdout=log, stderr=subprocess.STDOUT)
        ready = wait_until(
            lambda: (read_state(state).get("triggers") or {}).get("nats") and read_state(state).get("pid") == proc.pid, 60
        )
        assert ready, (tmp_path / "supervisor.log").read_text()[-3000:]
        return proc

    with postgres_server() as dsn:
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute("CREATE TABLE reviews (id serial PRIMARY KEY, text text)")
            assert sai("db", "watch", dsn, "reviews", "--topic", "reviews", env=env).returncode == 0
            first = start()
            try:
                publish(read_state(state)["triggers"], "jobs", *(f"slow-{i}".encode() for i in range(4)))
                assert wait_until(lambda: calls(tmp_path / "worker"), 20)  # slow-0 is being handled (1.5 s)
                first.send_signal(signal.SIGKILL)
                first.wait(10)
                db.execute("INSERT INTO reviews (text) VALUES ('written while the platform was down')")
                assert db.execute("SELECT count(*) FROM sai.outbox").fetchone() == (1,)
            finally:
                if first.poll() is None:
                    first.kill()
            second = start()
            try:
                bodies = lambda: [c["body"] for c in calls(tmp_path / "worker")]  # noqa: E731

                def all_delivered() -> bool:
                    got = bodies()
                    return all(f"slow-{i}" in got for i in range(4)) and got.count("slow-0") >= 2 and calls(tmp_path / "rows")

                assert wait_until(all_delivered, 45), (bodies(), calls(tmp_path / "rows"))
                row = json.loads(calls(tmp_path / "rows")[0]["body"])
                assert row["row"]["text"] == "written while the platform was down"
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(30)

"""sai.local.async_calls on its own: a real aiohttp server process wrapping AsyncCalls (with a stand-in
function that records every invocation), a real callback receiver, real SQLite, real restarts
(SIGTERM and SIGKILL of the server process).

The same machinery behind the real gateway is covered in test_async_gateway.py."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from sai.local.processes import wait_until
from sai.state import free_port

# The server under test: AsyncCalls mounted like the gateway mounts it; the "function" sleeps
# ?sleep= seconds, answers ?status=, and appends each invocation's call id to a log file.
APP = textwrap.dedent(
    """
    import asyncio, json, logging, sys
    from aiohttp import web
    from sai.local.async_calls import AsyncCalls
    from sai.local.callbacks import CallbackPolicy

    db, port, invocations, concurrency, limit, per_host = sys.argv[1], int(sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:7])
    allow = [a for a in sys.argv[7].split(",") if a]
    logging.basicConfig(level=logging.INFO)

    async def invoke(name, method, path_qs, headers, body):
        from urllib.parse import urlsplit, parse_qs
        q = parse_qs(urlsplit(path_qs).query)
        with open(invocations, "a") as f:
            f.write(headers["X-Call-Id"] + "\\n")
        await asyncio.sleep(float(q.get("sleep", ["0"])[0]))
        if q.get("crash"):
            raise ConnectionError("function process died")
        out = {"name": name, "method": method, "path_qs": path_qs, "body": body.decode()}
        return int(q.get("status", ["200"])[0]), {"Content-Type": "application/json"}, json.dumps(out).encode()

    calls = AsyncCalls(db, concurrency=concurrency, queue_limit=limit,
                       policy=CallbackPolicy(lambda: {port: "gateway"}, allow), per_host_limit=per_host,
                       callback_backoff=0.2, callback_attempts=4, drain_timeout=10)

    async def route(request):
        return await calls.accept(request, request.match_info["name"])

    async def on_startup(app):
        await calls.start(invoke)

    async def on_shutdown(app):
        await calls.stop()

    app = web.Application()
    app.router.add_route("*", "/async-function/{name}", route)
    app.router.add_route("*", "/async-function/{name}/{tail:.*}", route)
    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    web.run_app(app, host="127.0.0.1", port=port, print=lambda *a: print("READY", flush=True))
    """
)


class Server:
    def __init__(self, tmp_path, concurrency=2, limit=100, per_host=20, allow=""):
        self.script = tmp_path / "app.py"
        self.script.write_text(APP)
        self.db = tmp_path / "calls.db"
        self.invocations = tmp_path / "invocations.log"
        self.port = free_port()
        self.args = [str(self.db), str(self.port), str(self.invocations), str(concurrency), str(limit), str(per_host), allow]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.log = tmp_path / "server.log"

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(self.script), *self.args],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.proc.stdout.readline().strip() == "READY", self.log.read_text()

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)

    def invoked(self) -> list[str]:
        return self.invocations.read_text().split() if self.invocations.exists() else []

    def call(self, path="/async-function/echo", callback=None, data=b"hi", **kw):
        headers = {"X-Callback-Url": callback} if callback else {}
        return requests.post(self.url + path, data=data, headers=headers, timeout=10, **kw)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    s.start()
    yield s
    if s.proc.poll() is None:
        s.stop()


def test_accept_run_and_callback(server, receiver):
    r = server.call("/async-function/echo/sub/path?x=1&status=201", receiver.url, data=b"payload")
    assert r.status_code == 202
    call_id = r.headers["X-Call-Id"]
    got = receiver.wait_for([call_id])[call_id]
    assert len(got) == 1
    h = got[0]["headers"]
    assert h["X-Function-Status"] == "201"
    assert h["Content-Type"] == "application/json"
    assert h["X-Function-Name"] == "echo"
    body = json.loads(got[0]["body"])
    assert body == {"name": "echo", "method": "POST", "path_qs": "/sub/path?x=1&status=201", "body": "payload"}


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://",
        "http://127.0.0.1:99999/x",
        "http://127.0.0.1:{port}/function/echo",
        "http://localhost:{port}/x",
        "http://[::1]:{port}/x",
        "http://127.0.0.5:{port}/x",
        "http://0.0.0.0:{port}/x",
        # every other spelling of this machine still reaches the gateway
        "http://0x7f000001:{port}/x",
        "http://2130706433:{port}/x",
        "http://127.1:{port}/x",
        "http://0177.0.0.1:{port}/x",
        "http://[::ffff:127.0.0.1]:{port}/x",
        "http://[::ffff:7f00:1]:{port}/x",
        "http://[::127.0.0.1]:{port}/x",
        "http://localhost.:{port}/x",
        # link-local and cloud metadata, credentials, private ranges without an allow-list entry
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]:8000/x",
        "http://[fd00:ec2::254]/x",
        "http://100.100.100.200/x",
        "http://user:pw@127.0.0.1:9/x",
        "http://10.1.2.3:8000/x",
        "http://192.168.1.10/x",
        "http://[fc00::1]/x",
        "http://224.0.0.1/x",
        "http://no-such-host.invalid/x",
    ],
)
def test_bad_callback_urls_are_refused(server, url):
    r = server.call(callback=url.format(port=server.port))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_callback_url"
    assert r.json()["error"]["message"].startswith("X-Callback-Url")
    assert server.invoked() == []


def test_private_ranges_only_through_the_allow_list(tmp_path):
    s = Server(tmp_path, allow="10.0.0.0/8,192.168.7.7:8000")
    s.start()
    try:
        assert s.call(callback="http://10.9.8.7:9000/hook").status_code == 202
        assert s.call(callback="http://192.168.7.7:8000/hook").status_code == 202
        assert s.call(callback="http://192.168.7.7:8001/hook").status_code == 400
        # the allow-list never opens the platform itself or metadata
        assert s.call(callback="http://169.254.169.254/").status_code == 400
        assert s.call(callback=f"http://127.0.0.1:{s.port}/").status_code == 400
    finally:
        s.stop()


def test_a_hanging_receiver_does_not_block_other_callers(tmp_path, receiver):
    """A receiver that never answers once filled the whole queue (429 for everyone).
    Now it gets at most `per_host` open calls; other receivers are served at once."""
    import socket

    hang = socket.socket()  # accepts connections (backlog) and never answers
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    s = Server(tmp_path, concurrency=2, limit=20, per_host=3)
    s.start()
    try:
        stuck = f"http://127.0.0.1:{hang.getsockname()[1]}/hook"
        assert [s.call(callback=stuck).status_code for _ in range(3)] == [202] * 3
        time.sleep(0.5)  # the three ran; their results wait for the receiver
        assert [s.call(callback=stuck).status_code for _ in range(2)] == [429] * 2
        r = s.call(callback=stuck)
        assert r.json()["error"]["code"] == "callback_host_busy" and "Retry-After" in r.headers
        # Another receiver is served at once: 12 calls, at most per_host (3) of its own waiting at a
        # time (firing all 12 back to back could legitimately leave more than 3 of them waiting on
        # a loaded machine, and then 429 would be the right answer for that receiver too).
        started = time.monotonic()
        for _ in range(4):
            replies = [s.call(callback=receiver.url) for _ in range(3)]
            assert [r.status_code for r in replies] == [202] * 3, replies[-1].text
            receiver.wait_for([r.headers["X-Call-Id"] for r in replies], timeout=10)
        assert time.monotonic() - started < 10
    finally:
        s.stop()
        hang.close()


def test_function_failure_is_delivered_with_its_status(server, receiver):
    ids = [
        server.call("/async-function/echo?status=500", receiver.url).headers["X-Call-Id"],
        server.call("/async-function/echo?crash=1", receiver.url).headers["X-Call-Id"],
    ]
    got = receiver.wait_for(ids)
    assert got[ids[0]][0]["headers"]["X-Function-Status"] == "500"
    assert got[ids[1]][0]["headers"]["X-Function-Status"] == "502"
    assert json.loads(got[ids[1]][0]["body"])["error"]["code"] == "function_unreachable"


def test_callback_retried_with_backoff_then_delivered_once(server, receiver):
    receiver.fail_next = 2
    call_id = server.call(callback=receiver.url).headers["X-Call-Id"]
    got = receiver.wait_for([call_id])
    time.sleep(0.5)  # any further (duplicate) attempt would land here
    attempts = [c for c in receiver.calls if c["headers"]["X-Call-Id"] == call_id]
    assert [c["failed"] for c in attempts] == [True, True, False]
    assert len(got[call_id]) == 1
    assert server.invoked() == [call_id]  # retries redeliver; they never re-run the function


def test_dead_callback_gives_up_after_bounded_attempts(server):
    dead = f"http://127.0.0.1:{free_port()}/hook"
    call_id = server.call(callback=dead).headers["X-Call-Id"]

    # 4 attempts with 0.2, 0.4, 0.8 s back-off between them
    def row():
        with sqlite3.connect(server.db) as c:
            return c.execute("SELECT state, attempts, error FROM calls WHERE id=?", (call_id,)).fetchone()

    wait_until(lambda: row()[0] == "failed", 10, interval=0.1)
    row = row()
    assert row[0] == "failed" and row[1] == 4 and "unreachable" in row[2]
    # and the server still serves
    assert server.call().status_code == 202


def test_queue_full_gives_429(tmp_path, receiver):
    s = Server(tmp_path, concurrency=1, limit=2)
    s.start()
    try:
        codes = [s.call("/async-function/echo?sleep=1", receiver.url).status_code for _ in range(3)]
        assert codes == [202, 202, 429]
        r = s.call(callback=receiver.url)
        assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
        assert "Retry-After" in r.headers
        time.sleep(2.3)  # both done: room again
        assert s.call(callback=receiver.url).status_code == 202
    finally:
        s.stop()


def test_graceful_restart_loses_and_duplicates_nothing(tmp_path, receiver):
    s = Server(tmp_path, concurrency=1)
    s.start()
    ids = [s.call("/async-function/echo?sleep=0.3", receiver.url).headers["X-Call-Id"] for _ in range(6)]
    time.sleep(0.1)  # the first call is running
    s.stop(signal.SIGTERM)  # drains the running call, keeps the queued ones on disk
    assert 1 <= len(s.invoked()) < 6
    s.start()
    got = receiver.wait_for(ids)
    time.sleep(0.5)
    assert {i: len(got[i]) for i in ids} == {i: 1 for i in ids}
    assert sorted(s.invoked()) == sorted(ids)  # every function ran exactly once
    s.stop()


def test_hard_kill_loses_nothing_and_delivers_each_once(tmp_path, receiver):
    s = Server(tmp_path, concurrency=1)
    s.start()
    ids = [s.call("/async-function/echo?sleep=1", receiver.url).headers["X-Call-Id"] for _ in range(3)]
    time.sleep(0.2)
    s.stop(signal.SIGKILL)  # the first call dies mid-invocation, no result stored
    assert receiver.delivered() == {}
    s.start()
    got = receiver.wait_for(ids, timeout=15)
    time.sleep(0.3)
    assert {i: len(got[i]) for i in ids} == {i: 1 for i in ids}
    # the interrupted invocation ran again (at-least-once at that boundary); the others once
    inv = s.invoked()
    assert inv.count(ids[0]) == 2 and inv.count(ids[1]) == 1 and inv.count(ids[2]) == 1
    s.stop()


def test_the_database_gives_back_the_space_of_delivered_bodies(server, receiver):
    """Bodies are deleted once used; the file (and its WAL) must shrink back, not keep every
    megabyte it ever held."""
    body = b"b" * (1024 * 1024)
    ids = [server.call(callback=receiver.url, data=body).headers["X-Call-Id"] for _ in range(16)]
    receiver.wait_for(ids, timeout=20)

    def on_disk() -> int:
        return sum(p.stat().st_size for p in server.db.parent.glob(server.db.name + "*"))

    assert wait_until(lambda: on_disk() < 4 * 1024 * 1024, 10, interval=0.2), f"{on_disk()} bytes on disk"

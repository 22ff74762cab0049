"""Async invocations through the real gateway (sai.local.gateway.Gateway + sai.local.async_calls.AsyncCalls)
calling the real image-classify function on real Triton, with a callback receiver in the test.

The restart test runs its own Gateway instances (the platform's function processes behind them)
so it can stop and restart the gateway between accepting calls and completing them."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading

import requests
from aiohttp import web

from sai.local.async_calls import AsyncCalls
from sai.local.callbacks import CallbackPolicy
from sai.local.gateway import Gateway
from sai.local.processes import wait_until
from sai.state import free_port


class GatewayProcess:
    """One gateway 'process' lifetime: Gateway + AsyncCalls on `db`, served on its own loop
    thread, as the platform runs it. stop() is the gateway's graceful shutdown."""

    def __init__(self, functions, db, port, concurrency):
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        policy = CallbackPolicy(lambda: {port: "gateway"})
        calls = AsyncCalls(str(db), concurrency=concurrency, policy=policy, callback_backoff=0.2)
        self.gateway = Gateway(functions, calls)
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.runner = web.AppRunner(self.gateway.app, access_log=None)
            self.loop.run_until_complete(self.runner.setup())
            self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", port).start())
            started.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.runner.cleanup())  # -> AsyncCalls.stop()
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        assert not self.thread.is_alive()


def classify_async(base: str, image: bytes, callback: str, query: str = "") -> requests.Response:
    return requests.post(
        f"{base}/async-function/image-classify{query}", data=image, headers={"X-Callback-Url": callback}, timeout=10
    )


def states(db) -> dict[str, int]:
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT state, count(*) FROM calls GROUP BY state").fetchall())


def test_async_classify_through_the_platform_gateway(platform, receiver, coffee_jpeg):
    r = requests.post(
        f"{platform.gateway_url}/async-function/image-classify?top_k=3",
        data=coffee_jpeg,
        headers={"X-Callback-Url": receiver.url, "Content-Type": "image/jpeg"},
        timeout=10,
    )
    assert r.status_code == 202, r.text
    call_id = r.headers["X-Call-Id"]
    got = receiver.wait_for([call_id], timeout=30)[call_id]
    assert len(got) == 1
    assert got[0]["headers"]["X-Function-Status"] == "200"
    assert got[0]["headers"]["Content-Type"].startswith("application/json")
    body = json.loads(got[0]["body"])
    assert body["predictions"][0]["label"] == "espresso" and len(body["predictions"]) == 3
    # the gateway refuses callbacks into itself
    r = requests.post(
        f"{platform.gateway_url}/async-function/image-classify",
        data=coffee_jpeg,
        headers={"X-Callback-Url": f"{platform.gateway_url}/function/image-classify"},
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_callback_url"
    r = requests.post(f"{platform.gateway_url}/async-function/no-such-fn", data=b"x", timeout=10)
    assert r.status_code == 404


def test_gateway_restart_between_accept_and_completion(platform, receiver, coffee_jpeg, tmp_path):
    db = tmp_path / "async.db"
    port = free_port()
    n = 6
    # 1st gateway: accepts and persists, runs nothing (no workers), then goes down.
    gw = GatewayProcess(platform.functions, db, port, concurrency=0)
    ids = []
    for i in range(n):
        r = classify_async(gw.url, coffee_jpeg, receiver.url, f"?top_k=1&i={i}")
        assert r.status_code == 202
        ids.append(r.headers["X-Call-Id"])
    gw.stop()
    assert states(db) == {"queued": n}
    # 2nd gateway: one worker, stopped again right after more calls arrive: whatever is in
    # flight finishes (graceful shutdown), the rest stays queued.
    gw = GatewayProcess(platform.functions, db, port, concurrency=1)
    for i in range(n, 2 * n):
        r = classify_async(gw.url, coffee_jpeg, receiver.url, f"?top_k=1&i={i}")
        ids.append(r.headers["X-Call-Id"])
    gw.stop()
    invoked = gw.gateway.metrics.invocations("image-classify")
    assert sum(states(db).values()) == 2 * n and "running" not in states(db)
    # 3rd gateway: completes everything.
    gw = GatewayProcess(platform.functions, db, port, concurrency=2)
    try:
        got = receiver.wait_for(ids, timeout=60)
        assert {i: len(got[i]) for i in ids} == {i: 1 for i in ids}  # none lost, none twice
        assert all(json.loads(got[i][0]["body"])["predictions"][0]["label"] == "espresso" for i in ids)
        invoked += gw.gateway.metrics.invocations("image-classify")
        assert invoked == 2 * n  # each function call ran exactly once across the restarts
        wait_until(lambda: states(db) == {"done": 2 * n}, 5, interval=0.05)
        assert states(db) == {"done": 2 * n}
    finally:
        gw.stop()


def test_hostile_callbacks_into_the_platform_are_refused(platform, receiver, coffee_jpeg):
    """`X-Callback-Url: http://127.0.0.1:<s3-port>/moto-api/reset` was accepted and
    the delivery deleted every bucket. Every service of the platform, in any spelling, is refused
    with 400; a receiver on another loopback port still gets its result."""
    s = platform.settings
    s3 = platform.s3
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="ssrf-canary.txt", Body=b"still here")
    fn_port = platform.functions["image-classify"].port
    targets = [
        f"http://127.0.0.1:{s.s3_port}/moto-api/reset",
        f"http://0x7f000001:{s.s3_port}/moto-api/reset",
        f"http://2130706433:{s.s3_port}/moto-api/reset",
        f"http://[::ffff:127.0.0.1]:{s.s3_port}/moto-api/reset",
        f"http://127.1:{s.triton_http_port}/v2/repository/models/image_classifier/unload",
        f"http://localhost:{s.triton_grpc_port}/",
        f"http://127.0.0.1:{s.triton_metrics_port}/metrics",
        f"http://127.0.0.1:{fn_port}/",
        f"http://127.0.0.1:{s.port}/system/functions",
        "http://169.254.169.254/latest/meta-data/iam/",
        f"http://admin:secret@127.0.0.1:{s.s3_port}/",
    ]
    for url in targets:
        r = classify_async(platform.gateway_url, coffee_jpeg, url)
        assert r.status_code == 400, (url, r.status_code, r.text)
        assert r.json()["error"]["code"] == "bad_callback_url", url
    # nothing was delivered anywhere: the bucket and its objects are intact, Triton still serves
    assert client.get_object(Bucket=s3.bucket, Key="ssrf-canary.txt")["Body"].read() == b"still here"
    r = classify_async(platform.gateway_url, coffee_jpeg, receiver.url)
    assert r.status_code == 202
    call_id = r.headers["X-Call-Id"]
    got = receiver.wait_for([call_id], timeout=30)[call_id]
    assert json.loads(got[0]["body"])["predictions"][0]["label"] == "espresso"

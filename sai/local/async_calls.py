"""Asynchronous invocations for the local gateway, as OpenFaaS does them, but persisted.

`POST /async-function/<name>` -> 202 + X-Call-Id. The call is stored in SQLite before the 202 is
sent, runs in the background on `concurrency` workers, and its result is POSTed to X-Callback-Url
with X-Call-Id, X-Function-Status and the function's Content-Type, retried with exponential
backoff. Unlike OpenFaaS CE's in-memory NATS queue, accepted calls survive a gateway restart.

Life of a call (column `state`): queued -> running -> delivering -> done | failed.
The function's result is stored before delivery starts, so a restart never re-runs a function
whose result is already known; it only redelivers. A graceful `stop()` lets in-flight work finish
(up to `drain_timeout`), so across a clean restart every call runs and is delivered exactly once.
After a hard kill, a call that was `running` runs again and one that was mid-delivery may be
delivered twice: receivers can deduplicate on X-Call-Id.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from sai.local.call_store import CallStore
from sai.local.callbacks import CallbackPolicy, CallbackRefused, CallbackSender, host_key
from sai.local.platform_settings import Settings
from sai.local.responses import GatewayError, error_parts, error_response, forwardable

log = logging.getLogger(__name__)

Invoke = Callable[[str, str, str, dict, bytes], Awaitable[tuple[int, dict, bytes]]]

_OPEN_STATES = ("queued", "running", "delivering")


class AsyncCalls:
    """The persisted async-call queue. `start(invoke)` begins work; `invoke(name, method, path_qs,
    headers, body)` calls the function exactly like a synchronous call and returns (status,
    headers, body)."""

    def __init__(
        self,
        db_path: str,
        concurrency: int = Settings.async_concurrency,
        queue_limit: int = Settings.async_queue_limit,
        policy: CallbackPolicy | None = None,
        per_host_limit: int = 20,
        delivery_limit: int = 1000,
        host_delivery_concurrency: int = 4,
        callback_attempts: int = 6,
        callback_backoff: float = 0.5,
        callback_max_backoff: float = 30.0,
        callback_timeout: float = 10.0,
        drain_timeout: float = 30.0,
        retention_s: float = 7 * 24 * 3600,
    ):
        self.invoke: Invoke | None = None  # given by start()
        self.concurrency = concurrency
        self.queue_limit = queue_limit
        self.policy = policy or CallbackPolicy()
        # One receiver must not hold the whole queue (a hanging host once made every caller get
        # 429 for minutes): results waiting for delivery are counted apart from work still to
        # run, per receiver too (a receiver with per_host_limit undelivered results gets no
        # more calls), and each receiver gets a few connections of its own.
        self.per_host_limit = per_host_limit
        self.delivery_limit = delivery_limit
        self.host_delivery_concurrency = host_delivery_concurrency
        self.callback_attempts = callback_attempts
        self.callback_backoff = callback_backoff
        self.callback_max_backoff = callback_max_backoff
        self.callback_timeout = callback_timeout
        self.drain_timeout = drain_timeout
        self.store = CallStore(db_path, retention_s)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task] = []
        self._busy: set[asyncio.Task] = set()
        self._deliveries: set[asyncio.Task] = set()
        self._closing = asyncio.Event()
        self._pending = 0  # calls queued or running: the bounded-queue measure
        self._delivering = 0  # results waiting for their callback, bounded apart
        self._per_host: dict[str, int] = {}  # results waiting for delivery, by callback host key
        self._sender: CallbackSender | None = None
        self._started = False
        self.outcomes: collections.Counter[str] = collections.Counter()  # for the gateway's metrics

    def depth(self) -> dict[str, int]:
        """Calls pending (queued or running) and results delivering, for the gateway's metrics."""
        return {"pending": self._pending, "delivering": self._delivering}

    # ------------------------------------------------------------------ lifecycle

    async def start(self, invoke: Invoke) -> None:
        self.invoke = invoke
        queued, delivering = await self.store.open()
        self._pending, self._delivering = len(queued), len(delivering)
        self._per_host = {}
        for _, callback in delivering:
            self._host_enter(CallbackSender.host_key_of(callback or ""))  # delivering: it has a callback
        self._closing.clear()
        self._sender = CallbackSender(self.policy, self.host_delivery_concurrency, self.callback_timeout)
        for call_id, _ in queued:
            self._queue.put_nowait(call_id)
        for call_id, _ in delivering:
            self._spawn_delivery(call_id)
        self._workers = [asyncio.create_task(self._worker(), name=f"async-worker-{i}") for i in range(self.concurrency)]
        self._started = True
        if queued or delivering:
            log.info("async calls: resumed %d queued and %d undelivered calls", len(queued), len(delivering))

    async def stop(self) -> None:
        """Stop taking calls, let in-flight invocations and callback attempts finish (bounded by
        drain_timeout), leave the rest persisted for the next start."""
        if not self._started:
            return
        self._started = False
        self._closing.set()
        for w in self._workers:
            if w not in self._busy:
                w.cancel()
        deadline = time.monotonic() + self.drain_timeout
        # Workers first: a finishing invocation spawns a delivery, which then sees the closing flag.
        for group in (lambda: self._workers, lambda: list(self._deliveries)):
            tasks = group()
            if not tasks:
                continue
            _, not_done = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
            for t in not_done:
                t.cancel()
            await asyncio.gather(*not_done, return_exceptions=True)
        self._workers = []
        if self._sender is not None:
            await self._sender.close()
        await self.store.close()
        self._queue = asyncio.Queue()

    # ------------------------------------------------------------------ accepting

    async def check_callback(self, url: str) -> tuple[str | None, str]:
        """(reason it is refused or None, host key for the per-host limit)."""
        try:
            host, port, _ = await self.policy.check(url)
        except CallbackRefused as exc:
            return str(exc), ""
        return None, host_key(host, port)

    def _host_enter(self, key: str) -> None:
        self._per_host[key] = self._per_host.get(key, 0) + 1

    def _host_leave(self, key: str) -> None:
        left = self._per_host.get(key, 1) - 1
        if left > 0:
            self._per_host[key] = left
        else:
            self._per_host.pop(key, None)

    async def accept(
        self,
        request: web.Request,
        name: str,
        read_body: Callable[[], Awaitable[bytes]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        """Store the call and answer 202. `read_body` reads the body (the gateway's, with its cap
        and byte budget), only once the callback and the queue's room are checked. `headers`: what
        the function will get (the gateway's `upstream_headers`, without its credentials); by
        default the request's forwardable ones."""
        if not self._started or self._closing.is_set():
            return error_response(503, "shutting_down", "the gateway is not accepting async calls", retry_after=5)
        callback, host = request.headers.get("X-Callback-Url"), ""
        if callback is not None:
            callback = callback.strip()
            reason, host = await self.check_callback(callback)
            if reason:
                return error_response(400, "bad_callback_url", reason)
            if self._per_host.get(host, 0) >= self.per_host_limit:
                return error_response(
                    429,
                    "callback_host_busy",
                    f"{self.per_host_limit} async results already wait for delivery to {host}",
                    retry_after=5,
                )
            if self._delivering >= self.delivery_limit:
                return error_response(
                    429, "delivery_backlog", f"{self._delivering} results wait for their callbacks", retry_after=5
                )
        if self._pending >= self.queue_limit:
            return error_response(
                429, "queue_full", f"{self._pending} async calls pending (limit {self.queue_limit})", retry_after=5
            )
        self._pending += 1  # reserve the slot before awaiting, so concurrent accepts respect the limit
        try:
            body = await (read_body() if read_body else request.read())
            call_id = str(uuid.uuid4())
            prefix = f"/async-function/{name}"
            path = request.rel_url.path
            sub = path[len(prefix) :] if path.startswith(prefix) else ""
            path_qs = (sub or "/") + (f"?{request.rel_url.raw_query_string}" if request.rel_url.raw_query_string else "")
            headers = dict(forwardable(request.headers) if headers is None else headers)
            headers["X-Call-Id"] = call_id
            await self.store.insert(
                {
                    "id": call_id,
                    "name": name,
                    "method": request.method,
                    "path_qs": path_qs,
                    "headers": json.dumps(headers),
                    "body": body,
                    "callback": callback,
                    "state": "queued",
                    "created": time.time(),
                },
            )
        except Exception as exc:
            self._pending -= 1
            if isinstance(exc, web.HTTPException | GatewayError):
                raise
            log.exception("async call not stored")
            return error_response(500, "not_stored", "the call could not be stored")
        self._queue.put_nowait(call_id)
        return web.Response(status=202, headers={"X-Call-Id": call_id})

    # ------------------------------------------------------------------ running

    async def _worker(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        while not self._closing.is_set():
            call_id = await self._queue.get()
            self._busy.add(me)
            try:
                await self._run(call_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("async call %s: worker error", call_id)
            finally:
                self._busy.discard(me)

    async def _run(self, call_id: str) -> None:
        row = await self.store.load(call_id)
        if row is None or row["state"] != "queued":
            return
        if not await self.store.update(call_id, "queued", state="running"):
            return  # someone else took it
        started = time.monotonic()
        assert self.invoke is not None  # given by start()
        try:
            status, headers, body = await self.invoke(
                row["name"], row["method"], row["path_qs"], json.loads(row["headers"]), row["body"] or b""
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the call is reported to the callback
            log.warning("async call %s: %s unreachable: %s", call_id, row["name"], exc)
            status, headers, body = error_parts(502, "function_unreachable", f"{row['name']} did not answer")
        duration = time.monotonic() - started
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "application/octet-stream")
        if row["callback"]:
            await self.store.update(
                call_id,
                "running",
                state="delivering",
                status=status,
                result_headers=json.dumps({"Content-Type": ctype}),
                result_body=body,
                duration=duration,
                body=None,
            )
            self._pending -= 1  # the work is done; what is left is a delivery, counted apart
            self._delivering += 1
            self._host_enter(CallbackSender.host_key_of(row["callback"]))
            self._spawn_delivery(call_id)
        else:
            await self.store.update(
                call_id,
                "running",
                state="done",
                status=status,
                duration=duration,
                finished=time.time(),
                body=None,
            )
            self._pending -= 1
            self.outcomes["no_callback"] += 1
            await self.store.shrink()

    def _spawn_delivery(self, call_id: str) -> None:
        task = asyncio.create_task(self._deliver(call_id), name=f"async-callback-{call_id}")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, call_id: str) -> None:
        row = await self.store.load(call_id)
        if row is None or row["state"] != "delivering":
            return
        headers = {
            **json.loads(row["result_headers"] or "{}"),
            "X-Call-Id": call_id,
            "X-Function-Status": str(row["status"]),
            "X-Function-Name": row["name"],
            "X-Duration-Seconds": f"{row['duration'] or 0:.6f}",
        }
        attempts = row["attempts"]
        error = None
        while attempts < self.callback_attempts:
            if self._closing.is_set():
                return  # stays `delivering`: the next start resumes it
            attempts += 1
            assert self._sender is not None
            retry, error = await self._sender.post(row["callback"], headers, row["result_body"] or b"")
            if error is None:
                await self._finish_delivery(call_id, row["callback"], "done", attempts, None)
                return
            log.warning("async call %s: callback attempt %d failed: %s", call_id, attempts, error)
            await self.store.update(call_id, "delivering", attempts=attempts, error=error)
            if not retry:
                break
            delay = min(self.callback_backoff * 2 ** (attempts - 1), self.callback_max_backoff)
            try:
                await asyncio.wait_for(self._closing.wait(), delay)
                return  # shutting down during the back-off: resume after the restart
            except TimeoutError:
                pass
        await self._finish_delivery(call_id, row["callback"], "failed", attempts, error)

    async def _finish_delivery(self, call_id: str, callback: str, state: str, attempts: int, error: str | None) -> None:
        """Record how a delivery ended (done or failed) and drop the stored result."""
        if await self.store.update(
            call_id,
            "delivering",
            state=state,
            attempts=attempts,
            finished=time.time(),
            result_body=None,
            error=error,
        ):
            self.outcomes["delivered" if state == "done" else "callback_failed"] += 1
            await self._delivered(callback)

    async def _delivered(self, callback: str) -> None:
        """A delivery ended (done or failed): free its counts, give its pages back."""
        self._delivering -= 1
        self._host_leave(CallbackSender.host_key_of(callback))
        await self.store.shrink()

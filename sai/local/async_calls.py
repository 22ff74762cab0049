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
import concurrent.futures
import functools
import ipaddress
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from sai.local.responses import HOP_BY_HOP, error_parts, error_response

log = logging.getLogger(__name__)

Invoke = Callable[[str, str, str, dict, bytes], Awaitable[tuple[int, dict, bytes]]]

_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
_OPEN_STATES = ("queued", "running", "delivering")
MAX_CALLBACK_URL = 2048

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT UNIQUE NOT NULL,
    name           TEXT NOT NULL,
    method         TEXT NOT NULL,
    path_qs        TEXT NOT NULL,
    headers        TEXT NOT NULL,
    body           BLOB,
    callback       TEXT,
    state          TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    status         INTEGER,
    result_headers TEXT,
    result_body    BLOB,
    error          TEXT,
    created        REAL NOT NULL,
    finished       REAL,
    duration       REAL
);
CREATE INDEX IF NOT EXISTS calls_state ON calls(state);
"""


def _host_key(host: str | None, port: int | None, scheme: str) -> tuple[str, int] | None:
    """(host, port) with every loopback/unspecified spelling folded into one name, so
    http://localhost:8080, http://127.0.0.2:8080 and http://[::1]:8080 compare equal."""
    if not host:
        return None
    host = host.lower().strip("[]").rstrip(".")
    if port is None:
        port = 443 if scheme == "https" else 80
    if host == "localhost" or host.endswith(".localhost"):
        return ("<loopback>", port)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return (host, port)
    if ip.is_loopback or ip.is_unspecified:
        return ("<loopback>", port)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return _host_key(str(ip.ipv4_mapped), port, scheme)
    return (str(ip), port)


class AsyncCalls:
    """The persisted async-call queue. `start(invoke)` begins work; `invoke(name, method, path_qs,
    headers, body)` calls the function exactly like a synchronous call and returns (status,
    headers, body)."""

    def __init__(
        self,
        db_path: str,
        concurrency: int = 2,
        queue_limit: int = 100,
        gateway_base_urls: Iterable[str] = (),
        callback_attempts: int = 6,
        callback_backoff: float = 0.5,
        callback_max_backoff: float = 30.0,
        callback_timeout: float = 30.0,
        drain_timeout: float = 30.0,
        retention_s: float = 7 * 24 * 3600,
    ):
        self.db_path = str(db_path)
        self.invoke: Invoke | None = None  # given by start()
        self.concurrency = concurrency
        self.queue_limit = queue_limit
        self.callback_attempts = callback_attempts
        self.callback_backoff = callback_backoff
        self.callback_max_backoff = callback_max_backoff
        self.callback_timeout = callback_timeout
        self.drain_timeout = drain_timeout
        self.retention_s = retention_s
        self._gateway_keys = set()
        for url in gateway_base_urls:
            parts = urlsplit(url)
            key = _host_key(parts.hostname, parts.port, parts.scheme)
            if key:
                self._gateway_keys.add(key)
        # One thread owns the SQLite connection: DB calls never block the event loop and never
        # run concurrently with each other.
        self._db_exec = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="async-calls-db")
        self._conn: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task] = []
        self._busy: set[asyncio.Task] = set()
        self._deliveries: set[asyncio.Task] = set()
        self._closing = asyncio.Event()
        self._pending = 0  # calls not yet done/failed, the bounded-queue measure
        self._session: aiohttp.ClientSession | None = None
        self._started = False

    # ------------------------------------------------------------------ database (one thread)

    async def _db(self, fn, *args, **kwargs):
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._db_exec, call)

    def _open(self) -> tuple[list[str], list[str], int]:
        conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a 202 means the call is on disk, even if the machine loses power right after.
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        # Calls interrupted while the function ran (hard kill) run again: at-least-once there.
        conn.execute("UPDATE calls SET state='queued' WHERE state='running'")
        conn.execute(
            "DELETE FROM calls WHERE state IN ('done','failed') AND finished < ?",
            (time.time() - self.retention_s,),
        )
        queued = [r[0] for r in conn.execute("SELECT id FROM calls WHERE state='queued' ORDER BY seq")]
        delivering = [r[0] for r in conn.execute("SELECT id FROM calls WHERE state='delivering' ORDER BY seq")]
        self._conn = conn
        return queued, delivering, len(queued) + len(delivering)

    def _insert(self, row: dict) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._conn.execute(f"INSERT INTO calls ({cols}) VALUES ({marks})", tuple(row.values()))

    def _load(self, call_id: str) -> dict | None:
        cur = self._conn.execute("SELECT * FROM calls WHERE id=?", (call_id,))
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row)) if row else None

    def _update(self, call_id: str, expect_state: str, **fields) -> bool:
        """Compare-and-set on `state`: a transition happens once, whoever tries it."""
        sets = ", ".join(f"{k}=?" for k in fields)
        cur = self._conn.execute(f"UPDATE calls SET {sets} WHERE id=? AND state=?", (*fields.values(), call_id, expect_state))
        return cur.rowcount == 1

    # ------------------------------------------------------------------ lifecycle

    async def start(self, invoke: Invoke) -> None:
        self.invoke = invoke
        queued, delivering, pending = await self._db(self._open)
        self._pending = pending
        self._closing.clear()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.callback_timeout),
            headers={"User-Agent": "sai-gateway-async"},
        )
        for call_id in queued:
            self._queue.put_nowait(call_id)
        for call_id in delivering:
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
        if self._session:
            await self._session.close()
        if self._conn is not None:
            await self._db(self._conn.close)
            self._conn = None
        self._db_exec.shutdown(wait=True)
        self._db_exec = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="async-calls-db")
        self._queue = asyncio.Queue()

    # ------------------------------------------------------------------ accepting

    def check_callback(self, url: str, request: web.Request | None = None) -> str | None:
        """None when the callback URL is acceptable, else the reason it is not."""
        if len(url) > MAX_CALLBACK_URL:
            return "X-Callback-Url is too long"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return "X-Callback-Url is not a valid URL"
        if parts.scheme not in ("http", "https"):
            return "X-Callback-Url must be an http or https URL"
        if not parts.hostname:
            return "X-Callback-Url has no host"
        key = _host_key(parts.hostname, port, parts.scheme)
        own = set(self._gateway_keys)
        if request is not None:
            # The address this request reached and the Host it named are the gateway too.
            sock = request.transport.get_extra_info("sockname") if request.transport else None
            if sock:
                own.add(_host_key(str(sock[0]), int(sock[1]), "http"))
            try:
                host_parts = urlsplit(f"//{request.host}")
                own.add(_host_key(host_parts.hostname, host_parts.port or (sock[1] if sock else None), "http"))
            except ValueError:
                pass
        if key in own:
            return "X-Callback-Url points at the gateway itself"
        return None

    async def accept(self, request: web.Request, name: str) -> web.Response:
        if not self._started or self._closing.is_set():
            return error_response(503, "shutting_down", "the gateway is not accepting async calls", retry_after=5)
        callback = request.headers.get("X-Callback-Url")
        if callback is not None:
            reason = self.check_callback(callback.strip(), request)
            if reason:
                return error_response(400, "bad_callback_url", reason)
            callback = callback.strip()
        if self._pending >= self.queue_limit:
            return error_response(
                429, "queue_full", f"{self._pending} async calls pending (limit {self.queue_limit})", retry_after=5
            )
        self._pending += 1  # reserve the slot before awaiting, so concurrent accepts respect the limit
        try:
            body = await request.read()
            call_id = str(uuid.uuid4())
            prefix = f"/async-function/{name}"
            path = request.rel_url.path
            sub = path[len(prefix) :] if path.startswith(prefix) else ""
            path_qs = (sub or "/") + (f"?{request.rel_url.raw_query_string}" if request.rel_url.raw_query_string else "")
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["X-Call-Id"] = call_id
            await self._db(
                self._insert,
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
            if isinstance(exc, web.HTTPException):
                raise
            log.exception("async call not stored")
            return error_response(500, "not_stored", "the call could not be stored")
        self._queue.put_nowait(call_id)
        return web.Response(status=202, headers={"X-Call-Id": call_id})

    # ------------------------------------------------------------------ running

    async def _worker(self) -> None:
        me = asyncio.current_task()
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
        row = await self._db(self._load, call_id)
        if row is None or row["state"] != "queued":
            return
        if not await self._db(self._update, call_id, "queued", state="running"):
            return  # someone else took it
        started = time.monotonic()
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
            await self._db(
                self._update,
                call_id,
                "running",
                state="delivering",
                status=status,
                result_headers=json.dumps({"Content-Type": ctype}),
                result_body=body,
                duration=duration,
                body=None,
            )
            self._spawn_delivery(call_id)
        else:
            await self._db(
                self._update,
                call_id,
                "running",
                state="done",
                status=status,
                duration=duration,
                finished=time.time(),
                body=None,
            )
            self._pending -= 1

    def _spawn_delivery(self, call_id: str) -> None:
        task = asyncio.create_task(self._deliver(call_id), name=f"async-callback-{call_id}")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, call_id: str) -> None:
        row = await self._db(self._load, call_id)
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
            retry, error = await self._post(row["callback"], headers, row["result_body"] or b"")
            if error is None:
                if await self._db(
                    self._update,
                    call_id,
                    "delivering",
                    state="done",
                    attempts=attempts,
                    finished=time.time(),
                    result_body=None,
                    error=None,
                ):
                    self._pending -= 1
                return
            log.warning("async call %s: callback attempt %d failed: %s", call_id, attempts, error)
            await self._db(self._update, call_id, "delivering", attempts=attempts, error=error)
            if not retry:
                break
            delay = min(self.callback_backoff * 2 ** (attempts - 1), self.callback_max_backoff)
            try:
                await asyncio.wait_for(self._closing.wait(), delay)
                return  # shutting down during the back-off: resume after the restart
            except asyncio.TimeoutError:
                pass
        if await self._db(
            self._update,
            call_id,
            "delivering",
            state="failed",
            attempts=attempts,
            finished=time.time(),
            error=error,
            result_body=None,
        ):
            self._pending -= 1

    async def _post(self, url: str, headers: dict, body: bytes) -> tuple[bool, str | None]:
        """One callback attempt -> (worth retrying, error or None)."""
        try:
            # No redirects: a redirect could lead back into the gateway.
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return False, None
                return resp.status in _RETRY_STATUSES, f"callback answered {resp.status}"
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return True, f"callback unreachable: {type(exc).__name__}"

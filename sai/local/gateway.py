"""An OpenFaaS-compatible gateway for the local platform (aiohttp).

Routes, as the OpenFaaS gateway has them (<name> may be <name>.openfaas-fn):
  ANY  /function/<name>[/<path>][?query]   proxied to the function (its replicas in turn); sub-path and query passed through
  POST /async-function/<name>[/<path>]     queued (202 + X-Call-Id), result POSTed to X-Callback-Url
  /system/*                                the OpenFaaS API: deploy, scale, secrets, logs... (system_api.py)
  GET  /healthz                            200 once the gateway serves (never behind auth)
  GET  /metrics                            Prometheus metrics, OpenFaaS's names (gateway_metrics.py; not behind auth)
  GET  /ui/                                the portal page (portal/; its API calls carry the credentials)
Errors are JSON `{"error": {"code", "message"}}` (malformed HTTP too: http_server.py); an unreachable function gives 503 + Retry-After,
a slow one 504 after the upstream timeout.

Bodies are streamed to functions, never held whole: each function's MAX_BODY_BYTES (stack.yml) is
applied here before reading (413 from Content-Length, or as soon as a chunked body passes it).
Async calls must be stored, so their bodies are read, within a budget of bytes held at once.
Admission (max_inflight, a bounded wait queue) is in admission.py; who may call, and which of
the caller's headers reach a function, in access.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from common.errors import ServiceError
from sai.local import gateway_metrics, portal
from sai.local.access import Access, Handler
from sai.local.admission import Admission, Busy, ByteBudget
from sai.local.async_calls import AsyncCalls
from sai.local.function_replicas import RunningFunction
from sai.local.function_runner import GATEWAY_POOL
from sai.local.platform_settings import Settings
from sai.local.responses import GatewayError, error_parts, forwardable, parts, reply
from sai.local.responses import error_response as error
from sai.local.scaler import Scaler, Unavailable
from sai.local.system_api import Control, SystemAPI, check_namespace

log = logging.getLogger(__name__)

# What the python3-http-debian template's Flask route accepts (HEAD comes with GET); anything
# else (TRACE, OPTIONS, CONNECT...) is answered here with a JSON 405, not Flask's HTML.
# A request body as the gateway passes it on: whole (async calls), streamed, or none.
Body = bytes | AsyncIterator[bytes] | None

FUNCTION_METHODS = ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE")
CHUNK = 64 * 1024


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (unknown route, body too large, bad method) as JSON, never HTML."""
    try:
        return await handler(request)
    except ServiceError as exc:  # GatewayError and its subclasses (common/errors.py has the tree)
        return reply(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status, "http_error")
        resp = error(exc.status, code, exc.reason if exc.status != 413 else exc.text or "request body too large")
        if exc.status == 405 and "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except Exception:  # noqa: BLE001 - never a traceback to the client
        log.exception("gateway error on %s %s", request.method, request.path)
        return error(500, "internal_error", "gateway error; see the platform log")


class Gateway:
    """`functions` maps name -> RunningFunction (function_replicas.py), whose replicas the gateway
    calls in turn; the function fleet owns and supervises the processes, and `scaler` (when given)
    scales them to zero, wakes them on a call and scales them out (scaler.py).
    `async_calls` queues /async-function calls (None: they answer 501); the gateway starts it
    with its own `invoke`, so async calls reach functions exactly as synchronous ones do.
    `settings` gives the limits and timeouts. `credentials` (user, password) turn on basic auth
    for /system/*, and for the function routes too when `settings.auth_functions`. `control` (the
    platform) serves the /system/* API."""

    def __init__(
        self,
        functions: dict,
        async_calls: AsyncCalls | None = None,
        settings: Settings | None = None,
        credentials: tuple[str, str] | None = None,
        control: Control | None = None,
        scaler: Scaler | None = None,
    ):
        settings = settings or Settings()
        self.functions = functions
        self.scaler = scaler  # scale to zero, wake on request, scale out (scaler.py); None: replicas as they are
        self.async_calls = async_calls
        self.upstream_timeout = aiohttp.ClientTimeout(total=settings.upstream_timeout_s, sock_connect=2)
        self.max_body_bytes = settings.max_body_bytes
        self.max_queued, self.queue_wait_s = settings.max_queued, settings.queue_wait_s
        self.buffered = ByteBudget(settings.max_buffered_bytes)
        self.body_idle_timeout_s = settings.body_idle_timeout_s
        self.access = Access(credentials, settings.auth_functions, [settings.host, *settings.allowed_hosts])
        self._admission: dict[str, Admission] = {}
        self.metrics = gateway_metrics.GatewayMetrics(
            functions,
            lambda name: self.admission(name).inflight,
            async_calls.depth if async_calls else dict,
            (lambda: dict(async_calls.outcomes)) if async_calls else dict,
        )
        if scaler is not None:
            scaler.on_cold_start = self.metrics.cold_start
        self.session: aiohttp.ClientSession | None = None
        self.system_api = (
            SystemAPI(functions, self.metrics, settings.upstream_timeout_s, control) if control is not None else None
        )
        self.app = self._make_app()

    def _make_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.max_body_bytes, middlewares=[json_errors, self.access.host_check, self.access.auth]
        )
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.prometheus)
        portal.add_routes(app)
        if self.system_api is not None:
            self.system_api.add_routes(app)
        for route in ("/function/{name}", "/function/{name}/{tail:.*}"):
            for method in FUNCTION_METHODS:
                if method != "HEAD":  # aiohttp adds HEAD to GET routes
                    app.router.add_route(method, route, self.call)
        app.router.add_post("/async-function/{name}", self.call_async)
        app.router.add_post("/async-function/{name}/{tail:.*}", self.call_async)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    def body_cap(self, name: str) -> int:
        """The function's own MAX_BODY_BYTES, or the gateway's cap when it sets none."""
        value = self.functions[name].spec.environment.get("MAX_BODY_BYTES", "")
        return min(int(value), self.max_body_bytes) if value.isdigit() else self.max_body_bytes

    def admission(self, name: str) -> Admission:
        if name not in self._admission:
            value = self.functions[name].spec.environment.get("max_inflight", "0")
            limit = int(value) if value.isdigit() else 0
            self._admission[name] = Admission(name, limit, self.max_queued, self.queue_wait_s)
        return self._admission[name]

    def forget(self, name: str) -> None:
        """Drop what was derived from a function's spec (its max_inflight): it was updated or removed."""
        self._admission.pop(name, None)

    async def _startup(self, app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=GATEWAY_POOL, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        if self.async_calls is not None:
            await self.async_calls.start(self.invoke)
        if self.scaler is not None:
            self.scaler.start()

    async def _cleanup(self, app: web.Application) -> None:
        if self.scaler is not None:
            await self.scaler.stop()
        if self.async_calls is not None:
            await self.async_calls.stop()
        if self.session is not None:
            await self.session.close()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def prometheus(self, request: web.Request) -> web.Response:
        # Not behind auth: OpenFaaS serves it on a port of its own with none (gateway/main.go,
        # runMetricsServer); it carries names and counts, never bodies.
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": gateway_metrics.CONTENT_TYPE})

    def _function(self, request: web.Request) -> str:
        """The function a route names: `name`, or `name.namespace` with this platform's namespace."""
        name = request.match_info["name"]
        base, dot, namespace = name.rpartition(".")
        if dot and name not in self.functions:
            check_namespace(namespace)
            name = base
        if name not in self.functions:
            raise GatewayError(404, "function_not_found", f"no function named {name!r}")
        return name

    @staticmethod
    def _upstream_path(request: web.Request) -> str:
        tail = request.match_info.get("tail", "")
        return "/" + tail + (f"?{request.query_string}" if request.query_string else "")

    def _too_large(self, name: str, request: web.Request) -> web.Response | None:
        """413 from the Content-Length alone, before a byte of the body is read."""
        cap = self.body_cap(name)
        if request.content_length is not None and request.content_length > cap:
            resp = error(413, "body_too_large", f"request body of {request.content_length} bytes; {name!r} takes {cap}")
            resp.force_close()  # the unread body is not drained into memory
            return resp
        return None

    async def _chunks(self, request: web.Request, cap: int) -> AsyncIterator[bytes]:
        """The request body as it arrives, at most `cap` bytes, each chunk within the idle timeout."""
        seen = 0
        while True:
            try:
                chunk = await asyncio.wait_for(request.content.readany(), self.body_idle_timeout_s)
            except TimeoutError:
                raise BodyTimeout() from None
            if not chunk:
                return
            seen += len(chunk)
            if seen > cap:
                raise BodyTooLarge()
            yield chunk

    async def read_body(self, request: web.Request, name: str) -> bytes:
        """The whole body (async calls store it), within the cap and the gateway's byte budget."""
        cap = self.body_cap(name)
        reserve = min(request.content_length if request.content_length is not None else cap, cap)
        if not self.buffered.take(reserve):
            raise GatewayError(503, "gateway_busy", "the gateway holds as many request bodies as it may", retry_after=2)
        try:
            return b"".join([chunk async for chunk in self._chunks(request, cap)])
        except (BodyTooLarge, BodyTimeout) as exc:
            raise self._body_error(exc, name) from None
        finally:
            self.buffered.give(reserve)

    async def call(self, request: web.Request) -> web.Response:
        name = self._function(request)
        if too_large := self._too_large(name, request):
            return too_large
        start = time.perf_counter()
        headers = self.access.upstream_headers(request)
        call_id = headers.setdefault("X-Call-Id", str(uuid.uuid4()))
        headers["X-Forwarded-For"] = request.remote or ""
        body = None
        if request.body_exists:
            if request.content_length is not None:
                headers["Content-Length"] = str(request.content_length)  # streamed, not chunked
            body = self._chunks(request, self.body_cap(name))
        status, out_headers, data = await self.invoke(
            name, request.method, self._upstream_path(request), headers, body, queue=True
        )
        # As OpenFaaS's gateway answers (handlers/callid_middleware.go, forwarding_proxy.go); on
        # the gateway's own errors too, so a failed call can be found in the logs by its id.
        out_headers["X-Call-Id"] = call_id
        out_headers.setdefault("X-Duration-Seconds", f"{time.perf_counter() - start:.6f}")
        resp = web.Response(status=status, headers=out_headers, body=data)
        if status in (408, 413):
            resp.force_close()
        return resp

    async def invoke(
        self, name: str, method: str, path_qs: str, headers: dict, body: Body, queue: bool = False
    ) -> tuple[int, dict, bytes]:
        """Call a function once; errors come back as JSON responses, never exceptions. `body` is
        bytes or an async iterator of chunks. `queue`: a client waits in the bounded queue (429 or
        503 when there is no slot); otherwise (async workers) the call waits for a slot. Every call
        is counted in the metrics and logged with its X-Call-Id (OpenFaaS's LoggingNotifier logs
        "Forwarded [...]" likewise)."""
        start, status = time.perf_counter(), gateway_metrics.CLIENT_GONE
        try:
            result = await self._invoke(name, method, path_qs, headers, body, queue)
            status = result[0]
            return result
        finally:
            seconds = time.perf_counter() - start
            self.metrics.finished(name, status, seconds)
            where = f"/function/{name}" + (path_qs if path_qs != "/" else "")
            log.info("call %s: %s %s -> %d in %.1f ms", headers.get("X-Call-Id", "-"), method, where, status, seconds * 1e3)

    async def _invoke(
        self, name: str, method: str, path_qs: str, headers: dict, body: Body, queue: bool
    ) -> tuple[int, dict, bytes]:
        fn = self.functions.get(name)
        if fn is None:  # removed (faas-cli remove, sai reload) since the call was accepted
            return error_parts(404, "function_not_found", f"no function named {name!r}")
        if self.scaler is None:
            return await self._admitted(fn, name, method, path_qs, headers, body, queue, woke=False)
        self.scaler.started(name)  # its load: waiting for a wake or a slot counts
        try:
            try:
                woke = await self.scaler.serving(name)  # at zero: held while it wakes
            except Unavailable as exc:
                return error_parts(503, "function_unavailable", str(exc), retry_after=2)
            return await self._admitted(fn, name, method, path_qs, headers, body, queue, woke)
        finally:
            self.scaler.ended(name)

    async def _admitted(
        self, fn: RunningFunction, name: str, method: str, path_qs: str, headers: dict, body: Body, queue: bool, woke: bool
    ) -> tuple[int, dict, bytes]:
        """Take an admission slot (max_inflight per replica, shared by the replicas), then call
        the replica whose turn it is; `woke`: this call woke the function (its time to the
        answer is the cold start's last phase)."""
        admission = self.admission(name)
        admission.replicas(fn.available())
        try:
            await admission.enter(queue)
        except Busy as busy:
            return parts(busy)
        try:
            replica = fn.pick()  # after the wait for a slot: a replica may have left meanwhile
            if replica is None:
                return error_parts(503, "function_unavailable", f"function {name!r} is not running", retry_after=2)
            replica.inflight += 1  # no await since pick(): the scaler never stops a replica with calls
            start = time.perf_counter()
            try:
                return await self._forward(replica.url, name, method, path_qs, headers, body)
            finally:
                replica.inflight -= 1
                if woke:
                    self.metrics.cold_start(name, {"first_request": time.perf_counter() - start})
        finally:
            admission.leave()

    async def _forward(
        self, url: str, name: str, method: str, path_qs: str, headers: dict, body: Body
    ) -> tuple[int, dict, bytes]:
        start = time.perf_counter()
        assert self.session is not None  # made at the app's startup, before any request
        try:
            # No Content-Type of our own: the function sees what the client sent, or none, as
            # behind OpenFaaS's gateway (aiohttp would label a bare body application/octet-stream).
            async with self.session.request(
                method,
                url + path_qs,
                headers=headers,
                data=body,
                timeout=self.upstream_timeout,
                skip_auto_headers=("Content-Type",),
            ) as resp:
                data = await resp.read()
                out = forwardable(resp.headers)
                out["X-Duration-Seconds"] = f"{time.perf_counter() - start:.6f}"
                return resp.status, out, data
        except (BodyTooLarge, BodyTimeout) as exc:
            return parts(self._body_error(exc, name))
        except TimeoutError:
            return error_parts(
                504, "function_timeout", f"function {name!r} did not answer within {self.upstream_timeout.total:.0f}s"
            )
        except aiohttp.ClientError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, BodyTooLarge | BodyTimeout):  # raised while aiohttp sent the body
                return parts(self._body_error(cause, name))
            log.warning("function %s unreachable: %s", name, exc)
            return error_parts(503, "function_unavailable", f"function {name!r} is unreachable; retry shortly", retry_after=2)

    def _body_error(self, cause: Exception, name: str) -> GatewayError:
        """What a body that went over the cap or stalled gets (the connection is closed after)."""
        if isinstance(cause, BodyTooLarge):
            return GatewayError(413, "body_too_large", f"request body larger than {self.body_cap(name)} bytes", close=True)
        return GatewayError(408, "body_timeout", f"no request body data for {self.body_idle_timeout_s:g}s", close=True)

    async def call_async(self, request: web.Request) -> web.Response:
        name = self._function(request)
        if self.async_calls is None:
            return error(501, "async_disabled", "asynchronous invocations are not enabled on this gateway")
        if too_large := self._too_large(name, request):
            return too_large
        return await self.async_calls.accept(
            request, name, lambda: self.read_body(request, name), headers=self.access.upstream_headers(request)
        )

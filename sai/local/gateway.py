"""An OpenFaaS-compatible gateway for the local platform (aiohttp).

Routes, as the OpenFaaS gateway has them:
  ANY  /function/<name>[/<path>][?query]   proxied to the function; sub-path and query passed through
  POST /async-function/<name>[/<path>]     queued (202 + X-Call-Id), result POSTed to X-Callback-Url
  GET  /system/functions                   the deployed functions (from stack.yml)
  GET  /system/function/<name>             one of them
  GET  /healthz                            200 once the gateway serves
Errors are JSON `{"error": {"code", "message"}}`; an unreachable function gives 503 + Retry-After,
a slow one 504 after the upstream timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import aiohttp
from aiohttp import web

from sai.local.async_calls import AsyncCalls
from sai.local.responses import error_parts, forwardable
from sai.local.responses import error_response as error

log = logging.getLogger(__name__)


@web.middleware
async def json_errors(request: web.Request, handler):
    """aiohttp's own errors (unknown route, body too large, bad method) as JSON, never HTML."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status, "http_error")
        return error(exc.status, code, exc.reason if exc.status != 413 else exc.text or "request body too large")
    except Exception:  # noqa: BLE001 - never a traceback to the client
        log.exception("gateway error on %s %s", request.method, request.path)
        return error(500, "internal_error", "gateway error; see the platform log")


class Gateway:
    """`functions` maps name -> an object with `.url` (base URL or None when down) and `.spec`
    (sai.local.stack.Function); the platform owns and supervises the function processes.
    `async_calls` queues /async-function calls (None: they answer 501); the gateway starts it
    with its own `invoke`, so async calls reach functions exactly as synchronous ones do."""

    def __init__(
        self,
        functions: dict,
        async_calls: AsyncCalls | None = None,
        upstream_timeout_s: float = 60.0,
        max_body_bytes: int = 32 * 1024 * 1024,
    ):
        self.functions = functions
        self.async_calls = async_calls
        self.upstream_timeout = aiohttp.ClientTimeout(total=upstream_timeout_s, sock_connect=2)
        self.max_body_bytes = max_body_bytes
        self.invocations: dict[str, int] = {}
        self.session: aiohttp.ClientSession | None = None
        self.app = self._make_app()

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes, middlewares=[json_errors])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/system/functions", self.list_functions)
        app.router.add_get("/system/function/{name}", self.get_function)
        app.router.add_route("*", "/function/{name}", self.call)
        app.router.add_route("*", "/function/{name}/{tail:.*}", self.call)
        app.router.add_post("/async-function/{name}", self.call_async)
        app.router.add_post("/async-function/{name}/{tail:.*}", self.call_async)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, app) -> None:
        connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        if self.async_calls is not None:
            await self.async_calls.start(self.invoke)

    async def _cleanup(self, app) -> None:
        if self.async_calls is not None:
            await self.async_calls.stop()
        if self.session is not None:
            await self.session.close()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    def _describe(self, name: str) -> dict:
        fn = self.functions[name]
        spec = fn.spec
        return {
            "name": name,
            "image": spec.image,
            "namespace": "openfaas-fn",
            "envProcess": "",
            "labels": spec.labels,
            "annotations": spec.annotations,
            "replicas": 1,
            "availableReplicas": 1 if fn.url else 0,
            "invocationCount": self.invocations.get(name, 0),
        }

    async def list_functions(self, request: web.Request) -> web.Response:
        return web.json_response([self._describe(n) for n in sorted(self.functions)])

    async def get_function(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.functions:
            return error(404, "function_not_found", f"no function named {name!r}")
        return web.json_response(self._describe(name))

    @staticmethod
    def _upstream_path(request: web.Request) -> str:
        tail = request.match_info.get("tail", "")
        return "/" + tail + (f"?{request.query_string}" if request.query_string else "")

    async def call(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.functions:
            return error(404, "function_not_found", f"no function named {name!r}")
        body = await request.read()
        headers = forwardable(request.headers)
        headers.setdefault("X-Call-Id", str(uuid.uuid4()))
        headers["X-Forwarded-For"] = request.remote or ""
        status, out_headers, data = await self.invoke(name, request.method, self._upstream_path(request), headers, body)
        return web.Response(status=status, headers=out_headers, body=data)

    async def invoke(self, name: str, method: str, path_qs: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        """Call a function once; errors come back as JSON responses, never exceptions."""
        fn = self.functions[name]
        self.invocations[name] = self.invocations.get(name, 0) + 1
        if not fn.url:
            return error_parts(503, "function_unavailable", f"function {name!r} is not running", retry_after=2)
        start = time.perf_counter()
        try:
            async with self.session.request(
                method, fn.url + path_qs, headers=headers, data=body, timeout=self.upstream_timeout
            ) as resp:
                data = await resp.read()
                out = forwardable(resp.headers)
                out["X-Duration-Seconds"] = f"{time.perf_counter() - start:.6f}"
                return resp.status, out, data
        except asyncio.TimeoutError:
            return error_parts(
                504, "function_timeout", f"function {name!r} did not answer within {self.upstream_timeout.total:.0f}s"
            )
        except aiohttp.ClientError as exc:
            log.warning("function %s unreachable: %s", name, exc)
            return error_parts(503, "function_unavailable", f"function {name!r} is unreachable; retry shortly", retry_after=2)

    async def call_async(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.functions:
            return error(404, "function_not_found", f"no function named {name!r}")
        if self.async_calls is None:
            return error(501, "async_disabled", "asynchronous invocations are not enabled on this gateway")
        return await self.async_calls.accept(request, name)

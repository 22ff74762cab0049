"""The gateway's HTTP server: aiohttp's, except that requests aiohttp rejects before any handler
runs (a malformed request line or header, a header over 8 KiB, a bad chunked body) get the
gateway's JSON error instead of aiohttp's plain-text "400 Bad Request".

aiohttp answers those from `RequestHandler.handle_error` (aiohttp 3.x web_protocol.py), which
middlewares never see. After aiohttp has built its server (public `AppRunner.setup()` and
`.server`), each connection handler it makes becomes a `_JsonErrorHandler`: the same object with
aiohttp's own construction, logging and checks, only the error response swapped. pyproject pins
aiohttp below 4; `check_aiohttp()` refuses to start, naming this file, if the one method this
relies on changes its signature, and tests/unit/test_http_server.py fails with it.
"""

from __future__ import annotations

import inspect
from http import HTTPStatus

from aiohttp import web

from sai.local.responses import error_response

# RequestHandler.handle_error's parameters in aiohttp 3.9 - 3.14 (web_protocol.py)
HANDLE_ERROR_PARAMETERS = ["self", "request", "status", "exc", "message"]


def check_aiohttp() -> None:
    found = list(inspect.signature(web.RequestHandler.handle_error).parameters)
    if found != HANDLE_ERROR_PARAMETERS:
        raise RuntimeError(
            f"aiohttp's RequestHandler.handle_error takes {found}, not {HANDLE_ERROR_PARAMETERS}: "
            "sai/local/http_server.py must follow this aiohttp"
        )


class _JsonErrorHandler(web.RequestHandler):
    __slots__ = ()

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; raises once a response has begun
        if status >= 500:
            code, detail = "internal_error", "gateway error; see the platform log"  # never a traceback
        else:
            # the parser's reason, e.g. "Invalid method encountered" or "Got more than 8190 bytes"
            reason = getattr(exc, "message", None) or HTTPStatus(status).phrase
            code, detail = "bad_request", f"malformed HTTP request: {str(reason).splitlines()[0][:200]}"
        resp = error_response(status, code, detail)
        resp.force_close()
        return resp


class _Server(web.Server):
    def __call__(self) -> web.RequestHandler:
        handler = super().__call__()  # aiohttp's own construction (its kwargs fallback included)
        handler.__class__ = _JsonErrorHandler  # same slots and state; only handle_error differs
        return handler


class JsonErrorsRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer protocol errors with the gateway's JSON."""

    async def setup(self) -> None:
        check_aiohttp()
        await super().setup()  # runs the app's startup and builds the server
        self.server.__class__ = _Server  # before any site listens: every connection gets the JSON errors

"""The gateway's HTTP server: aiohttp's, except that requests aiohttp rejects before any handler
runs (a malformed request line or header, a header over 8 KiB, a bad chunked body) get the
gateway's JSON error instead of aiohttp's plain-text "400 Bad Request".

aiohttp answers those from `RequestHandler.handle_error` (aiohttp 3.x web_protocol.py, called
through `_make_error_handler`), which middlewares never see; so the server builds connections of
a subclass that keeps aiohttp's logging and checks and swaps only the response.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from sai.local.responses import error_response


class _JsonErrorHandler(RequestHandler):
    __slots__ = ()

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None, message: str | None = None):
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
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorsRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer protocol errors with the gateway's JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # runs the app's startup, as AppRunner does
        server.__class__ = _Server  # same object and state, only the connection factory differs
        return server

"""What the gateway sends besides a function's own answer: its JSON errors and the headers it
never forwards. The error shape and codes are the functions' own (common.errors), so a client
reads one format whichever side failed."""

from __future__ import annotations

import json

from aiohttp import web

from common.errors import error_document

# Headers never forwarded, in either direction: hop-by-hop (RFC 9110 7.6.1), or recomputed by the
# gateway and aiohttp (host, content-length, expect).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)


def forwardable(headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}


def error_parts(status: int, code: str, message: str, retry_after: int | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of a JSON error, the form `Gateway.invoke` returns."""
    headers = {"Content-Type": "application/json"}
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    return status, headers, json.dumps(error_document(code, message)).encode()


def error_response(status: int, code: str, message: str, retry_after: int | None = None) -> web.Response:
    status, headers, body = error_parts(status, code, message, retry_after)
    return web.Response(status=status, headers=headers, body=body)


class ErrorReply(Exception):
    """Raised where a handler cannot return: the gateway's middleware answers with this error."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None, close: bool = False):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after, self.close = status, code, message, retry_after, close

    def parts(self) -> tuple[int, dict, bytes]:
        return error_parts(self.status, self.code, self.message, self.retry_after)

    def response(self) -> web.Response:
        resp = error_response(self.status, self.code, self.message, self.retry_after)
        if self.close:
            resp.force_close()
        return resp

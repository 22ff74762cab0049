"""What the gateway sends besides a function's own answer: its JSON errors and the headers it
never forwards. The error shape and codes are the functions' own (common.errors), so a client
reads one format whichever side failed."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web

from common.errors import ServiceError

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


def forwardable(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}


def error_parts(status: int, code: str, message: str, retry_after: int | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of a JSON error, the form `Gateway.invoke` returns."""
    return parts(GatewayError(status, code, message, retry_after))


def error_response(status: int, code: str, message: str, retry_after: int | None = None) -> web.Response:
    return reply(GatewayError(status, code, message, retry_after))


class GatewayError(ServiceError):
    """Raised where a gateway handler cannot return: its middleware answers with this error
    (`close`: and closes the connection, for a body that was not read to its end)."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None, close: bool = False):
        super().__init__(status, code, message, retry_after=retry_after)
        self.close = close


def parts(exc: ServiceError) -> tuple[int, dict, bytes]:
    """(status, headers, body) of any error of the tree (common/errors.py)."""
    return exc.status, {"Content-Type": "application/json", **exc.headers}, json.dumps(exc.document()).encode()


def reply(exc: ServiceError) -> web.Response:
    """The gateway's answer to any error of the tree."""
    status, headers, body = parts(exc)
    resp = web.Response(status=status, headers=headers, body=body)
    if getattr(exc, "close", False):
        resp.force_close()
    return resp

"""Error handling under the python3-http template contract: every failure becomes a JSON response
`{"error": {"code", "message"}}` with a fitting status; clients never see a traceback."""

from __future__ import annotations

import functools
import logging
import traceback

log = logging.getLogger("function")


class FunctionError(Exception):
    """A failure the client should hear about: HTTP status, stable machine code, human message."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


class TritonUnavailable(FunctionError):
    """The model server is down, waking from zero, or not ready: retry later."""

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(503, "model_server_unavailable", message, {"Retry-After": str(retry_after)})


def json_response(body: dict, status: int = 200, headers: dict | None = None) -> dict:
    """A template response; a dict body is serialised by the template with `jsonify`."""
    return {"statusCode": status, "body": body, "headers": {"Content-Type": "application/json", **(headers or {})}}


def error_response(exc: FunctionError) -> dict:
    return json_response({"error": {"code": exc.code, "message": exc.message}}, exc.status, exc.headers)


def handler_errors(handle):
    """Wrap `handle(event, context)`: expected errors -> their status, anything else -> 500 JSON
    (traceback to the function's log only). The process keeps serving either way."""

    @functools.wraps(handle)
    def wrapper(event, context):
        try:
            return handle(event, context)
        except FunctionError as exc:
            if exc.status >= 500:
                log.warning("%s: %s", exc.code, exc.message)
            return error_response(exc)
        except Exception:  # noqa: BLE001 - the contract is "never a traceback to the client"
            log.error("unhandled error\n%s", traceback.format_exc())
            return error_response(FunctionError(500, "internal_error", "internal error; see the function's logs"))

    return wrapper

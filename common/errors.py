"""Errors under the python3-http template contract: every failure becomes a JSON response
`{"error": {"code", "message"}}` with a fitting status; clients never see a traceback.

ERROR_CODES is the one list of codes, for the functions and for the local gateway
(sai/local/responses.py builds its errors with `error_document` too), so a client reads one
format and one vocabulary whichever side failed.

The exception tree: every class is raised with (status, code, message) and answered as that JSON;
`retry_after` adds the Retry-After header.

    ServiceError               common/errors.py            the base
    ├── FunctionError          common/errors.py            raised in functions; handler_errors answers it
    │   └── TritonUnavailable  common/errors.py            503: the model server is down or waking
    └── GatewayError           sai/local/responses.py      the local gateway's; its middleware answers it
        ├── Busy               sai/local/admission.py      429/503: no slot for the call
        ├── DeployError        sai/local/deployments.py    a deploy, scale or removal refused
        └── SecretError        sai/local/secrets_store.py  a secret request refused

`handler_errors` wraps each function's `handle`: it checks the function's settings once at
start-up, logs every call with the gateway's X-Call-Id, and turns exceptions into JSON errors.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import time
import traceback

from . import settings
from .contract import Context, Event, Handler, Response

log = logging.getLogger(__name__)

ERROR_CODES = {
    # request shape (4xx)
    "method_not_allowed": "the HTTP method is not accepted here",
    "empty_body": "the request has no body",
    "body_too_large": "the request body is over the limit",
    "invalid_encoding": "the body is not valid UTF-8",
    "invalid_json": "the body is not valid JSON, or not the expected JSON type",
    "invalid_multipart": "a multipart body without a boundary",
    "missing_file": "a multipart body without the expected file part",
    "missing_field": "a JSON field that must be present is absent",
    "invalid_field": "a JSON field has the wrong type",
    "invalid_base64": "a field is not valid base64",
    "invalid_parameter": "a parameter is out of range or of the wrong type",
    "unsupported_media_type": "the Content-Type is not one the function reads",
    # images
    "unsupported_image": "not an image in a supported format",
    "invalid_image": "image data truncated or corrupt",
    "image_too_large": "the image has more pixels than MAX_IMAGE_PIXELS (MAX_FULL_DECODE_PIXELS if not JPEG)",
    # texts
    "empty_text": "a text is empty or only whitespace",
    "invalid_text": "a text holds characters that cannot be encoded (lone surrogates)",
    "text_too_long": "a text has more characters than MAX_TEXT_CHARS",
    "too_many_texts": "more texts than MAX_TEXTS in one request",
    "no_candidates": "text-keywords found no candidate phrases",
    # object-classify: the event, and per-record errors
    "bad_event": "the notification is not an S3 event",
    "too_many_records": "more records than MAX_RECORDS in one event",
    "bad_record": "a record lacks a field or has one of the wrong type",
    "unsafe_key": "an object key that could escape the results prefix",
    "bucket_not_allowed": "the event names a bucket that is not in SOURCE_BUCKETS",
    "in_progress": "another delivery of the same object is being classified (retryable)",
    "too_large": "the object is larger than MAX_OBJECT_BYTES",
    "not_found": "no such object, bucket or route",
    "access_denied": "object storage refused access",
    "s3_unavailable": "object storage is unreachable (retryable)",
    "s3_error": "object storage answered with another error",
    # the model server
    "model_server_unavailable": "Triton is down, waking from zero or not ready (retryable)",
    "model_error": "Triton rejected the inference request",
    "unsupported_model": "the model's Triton config does not fit the function (inputs, layout, dtype, sizes, parameters)",
    # the gateway
    "function_not_found": "no function of that name",
    "function_unavailable": "the function is not running (retryable)",
    "function_unreachable": "an async call's function did not answer",
    "function_timeout": "the function did not answer within the upstream timeout",
    "async_disabled": "this gateway takes no asynchronous calls",
    "bad_callback_url": "X-Callback-Url is invalid, carries credentials, or points at the platform, "
    "a link-local/metadata address or a private one not allowed (--callback-allow)",
    "queue_full": "too many asynchronous calls pending (retryable)",
    "callback_host_busy": "too many async calls wait for callbacks to the same receiver (retryable)",
    "delivery_backlog": "too many async results wait for their callbacks (retryable)",
    "too_many_requests": "the function has max_inflight calls running and its wait queue is full (retryable)",
    "function_busy": "no slot of the function freed up within the queue wait (retryable)",
    "gateway_busy": "the gateway holds its limit of request-body bytes (retryable)",
    "body_timeout": "the request body stopped arriving (read timeout)",
    "unauthorized": "missing or wrong credentials (basic auth)",
    "host_not_allowed": "the Host header names no host the gateway serves (DNS rebinding; sai up --allow-host)",
    "not_stored": "an asynchronous call could not be stored",
    "shutting_down": "the gateway is stopping (retryable)",
    "bad_request": "malformed HTTP: the request line, a header or the body framing",
    "http_error": "another HTTP error of the gateway",
    # the gateway's /system/* API (sai/local/system_api.py)
    "namespace_not_found": "a namespace other than openfaas-fn, the local platform's one",
    "invalid_deployment": "a FunctionDeployment without a valid service, image, secrets or string maps",
    "unknown_image": "a deployment's image matches no function folder of the checkout",
    "invalid_annotation": "a trigger annotation (topic, schedule) that no connector could use",
    "invalid_label": "a com.openfaas.scale.* label that does not parse or is out of range (docs/scaling.md)",
    "function_exists": "a function of that name is deployed already (update it with PUT)",
    "function_not_started": "a deployed function's process did not start (see its log)",
    "secret_not_found": "no secret of that name",
    "secret_exists": "a secret of that name exists already (update it with PUT)",
    "invalid_secret_name": "a secret name that is not a DNS-1123 subdomain, or ends like code (.py, .pth, .so)",
    "secret_too_large": "a secret value over 1 MiB (Kubernetes' limit)",
    "env_not_allowed": "a deployment's envVars set a variable that changes how the interpreter or loader starts",
    # anything else
    "internal_error": "an unexpected failure; see the logs",
}


def error_document(code: str, message: str) -> dict:
    """The JSON error body. Codes come from ERROR_CODES only."""
    if code not in ERROR_CODES:
        raise ValueError(f"error code {code!r} is not in common.errors.ERROR_CODES")
    return {"error": {"code": code, "message": message}}


class ServiceError(Exception):
    """A failure the client should hear about: HTTP status, stable machine code (ERROR_CODES),
    human message, and extra response headers (`retry_after`: seconds, as Retry-After)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})
        if retry_after:
            self.headers["Retry-After"] = str(retry_after)

    def document(self) -> dict:
        return error_document(self.code, self.message)


class FunctionError(ServiceError):
    """Raised by a function's code; `handler_errors` answers it."""


class TritonUnavailable(FunctionError):
    """The model server is down, waking from zero, or not ready: retry later."""

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(503, "model_server_unavailable", message, retry_after=retry_after)


def json_response(body: dict, status: int = 200, headers: dict | None = None) -> dict:
    """A template response; a dict body is serialised by the template with `jsonify`."""
    return {"statusCode": status, "body": body, "headers": {"Content-Type": "application/json", **(headers or {})}}


def error_response(exc: ServiceError) -> dict:
    return json_response(exc.document(), exc.status, exc.headers)


# The X-Call-Id of the call this thread serves: common.triton sends it to Triton as the request id,
# so one id finds a request in the gateway's, the function's and Triton's logs.
current_call_id: contextvars.ContextVar[str] = contextvars.ContextVar("current_call_id", default="")


def call_id(event: Event) -> str:
    """The gateway's X-Call-Id of this request ("-" when called without the gateway)."""
    headers = getattr(event, "headers", None) or {}
    return headers.get("X-Call-Id") or "-"


def handler_errors(handle: Handler) -> Handler:
    """Wrap `handle(event, context)`: check the settings now (start-up), then on every call log
    the outcome with the X-Call-Id; expected errors -> their status, anything else -> 500 JSON
    (traceback to the function's log only). The process keeps serving either way."""
    settings.check()

    @functools.wraps(handle)
    def wrapper(event: Event, context: Context) -> Response:
        cid, start = call_id(event), time.perf_counter()
        token = current_call_id.set(cid if cid != "-" else "")
        try:
            response = handle(event, context)
        except FunctionError as exc:
            if exc.status >= 500:
                log.warning("call %s: %s: %s", cid, exc.code, exc.message)
            response = error_response(exc)
        except Exception:  # noqa: BLE001 - the contract is "never a traceback to the client"
            log.error("call %s: unhandled error\n%s", cid, traceback.format_exc())
            response = error_response(FunctionError(500, "internal_error", "internal error; see the function's logs"))
        finally:
            current_call_id.reset(token)
        status = response.get("statusCode", 200) if isinstance(response, dict) else 200
        log.info(
            "call %s: %s %s -> %s in %.1f ms",
            cid,
            getattr(event, "method", "-"),
            getattr(event, "path", "-"),
            status,
            (time.perf_counter() - start) * 1e3,
        )
        return response

    return wrapper

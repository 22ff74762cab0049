"""The one Triton client every function uses.

- `TRITON_URL` is host:port of Triton's HTTP endpoint (binary tensors over HTTP/1.1 keep-alive).
- One tritonclient connection per worker thread (the template serves with several threads and the
  client's connection pool is not shared across OS threads), reused across requests.
- Connection errors and "model not ready" are retried with exponential backoff: while Triton wakes
  from zero the Knative activator holds requests, but a local or restarting server refuses them.
  When the retries run out the caller gets `TritonUnavailable` -> 503 + Retry-After.
- A timeout is never retried: TRITON_TIMEOUT_S is the whole budget (it sits below the Knative
  revision timeout and the function's exec_timeout), so the caller gets 503 + Retry-After at once
  rather than after another full wait.
- Model metadata and config are fetched once per model and cached: preprocessing is driven by them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import tritonclient.http as httpclient
from geventhttpclient.response import HTTPConnectionClosed
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from .errors import FunctionError, TritonUnavailable, current_call_id
from .settings import setting

log = logging.getLogger(__name__)
T = TypeVar("T")

_local = threading.local()
_cache: dict[tuple[str, str], dict] = {}

triton_url = setting("TRITON_URL", str, "127.0.0.1:8000")  # host:port of Triton's HTTP endpoint
timeout_s = setting("TRITON_TIMEOUT_S", float, 60.0, low=0.1)  # must cover a cold start behind the activator
connect_timeout_s = setting("TRITON_CONNECT_TIMEOUT_S", float, 5.0, low=0.1)
retries = setting("TRITON_RETRIES", int, 4, low=0)
retry_delay_s = setting("TRITON_RETRY_DELAY_S", float, 0.25, low=0.0)

# Transport failures, retried like a server that is not ready yet (httpx's map_exceptions is the
# model: exception types, not names). OSError covers refused, reset and timed-out connections;
# geventhttpclient raises HTTPConnectionClosed when a kept-alive connection died with the server.
TRANSPORT_ERRORS = (OSError, HTTPConnectionClosed)


def url() -> str:
    return triton_url().split("://", 1)[-1].rstrip("/")  # tritonclient wants host:port, no scheme


def client() -> httpclient.InferenceServerClient:
    current = getattr(_local, "client", None)
    if current is None or _local.url != url():
        current = httpclient.InferenceServerClient(url(), connection_timeout=connect_timeout_s(), network_timeout=timeout_s())
        _local.client, _local.url = current, url()
    return current


def _drop_client() -> None:
    current = getattr(_local, "client", None)
    _local.client = None
    if current is not None:
        try:
            current.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is gone anyway
            pass


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, TimeoutError):  # an OSError too: checked first
        return False
    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "")
        text = str(exc.message() or "").lower()
        # 503 or "model not ready / unknown model" while the server is still loading.
        return status in ("503", "StatusCode.UNAVAILABLE") or "not ready" in text or "unavailable" in text
    return isinstance(exc, TRANSPORT_ERRORS)


def call(what: str, fn: Callable[[httpclient.InferenceServerClient], T]) -> T:
    """Run `fn(client)` with retries; map failures to FunctionError/TritonUnavailable."""
    attempts, delay = retries() + 1, retry_delay_s()
    for attempt in range(attempts):
        try:
            return fn(client())
        except Exception as exc:  # noqa: BLE001 - classified below
            if not _retryable(exc):
                if isinstance(exc, TimeoutError):
                    _drop_client()  # the answer may still arrive on this connection: never reuse it
                    log.warning("triton did not answer %s within %.0fs", what, timeout_s())
                    raise TritonUnavailable(
                        f"model server at {url()} did not answer within {timeout_s():.0f}s; retry shortly"
                    ) from exc
                if isinstance(exc, InferenceServerException):
                    log.error("triton rejected %s: %s", what, exc)
                    raise FunctionError(502, "model_error", f"model server rejected {what}: {exc.message()}") from exc
                raise
            _drop_client()  # a fresh connection next time; the old one may be half-closed
            if attempt == attempts - 1:
                log.warning("triton unavailable for %s after %d attempts: %s", what, attempt + 1, exc)
                raise TritonUnavailable(f"model server at {url()} is unavailable or waking up; retry shortly") from exc
            time.sleep(delay * (2**attempt))
    raise AssertionError("unreachable")


def _cached(kind: str, model: str, fetch: Callable[[httpclient.InferenceServerClient], Any]) -> dict:
    key = (kind, f"{url()}/{model}")
    if key not in _cache:
        _cache[key] = call(f"{kind} of {model}", fetch)
    return _cache[key]


def model_metadata(model: str) -> dict:
    return _cached("metadata", model, lambda c: c.get_model_metadata(model))


def model_config(model: str) -> dict:
    return _cached("config", model, lambda c: c.get_model_config(model))


class InferResult(dict):
    """Output name -> numpy array, plus the version of the model that answered."""

    model_version: str = ""


def infer(model: str, inputs: dict[str, np.ndarray], outputs: list[str] | dict[str, int]) -> InferResult:
    """One inference. `outputs` is a list of names, or {name: class_count} to use Triton's
    classification extension (top-k "score:index:label" strings computed server-side)."""
    tensors = []
    for name, array in inputs.items():
        tensor = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
        tensors.append(tensor)
    counts = outputs if isinstance(outputs, dict) else dict.fromkeys(outputs, 0)
    requested = [httpclient.InferRequestedOutput(n, binary_data=True, class_count=k) for n, k in counts.items()]
    request_id = current_call_id.get()  # the caller's X-Call-Id, in Triton's logs and traces
    response = call(f"inference on {model}", lambda c: c.infer(model, tensors, outputs=requested, request_id=request_id))
    result = InferResult({n: response.as_numpy(n) for n in counts})
    result.model_version = str(response.get_response().get("model_version", ""))
    return result

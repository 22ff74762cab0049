"""The one Triton client every function uses.

- `TRITON_URL` is host:port of Triton's HTTP endpoint (binary tensors over HTTP/1.1 keep-alive).
- One tritonclient connection per worker thread (the template serves with several threads and the
  client's connection pool is not shared across OS threads), reused across requests.
- Connection errors and "model not ready" are retried with exponential backoff: while Triton wakes
  from zero the Knative activator holds requests, but a local or restarting server refuses them.
  When the retries run out the caller gets `TritonUnavailable` -> 503 + Retry-After.
- Model metadata and config are fetched once per model and cached: preprocessing is driven by them.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from .errors import FunctionError, TritonUnavailable

log = logging.getLogger("function.triton")

_local = threading.local()
_cache: dict[tuple[str, str], dict] = {}


def _setting(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def url() -> str:
    value = os.environ.get("TRITON_URL", "127.0.0.1:8000")
    return value.split("://", 1)[-1].rstrip("/")  # tritonclient wants host:port, no scheme


def client() -> httpclient.InferenceServerClient:
    current = getattr(_local, "client", None)
    if current is None or _local.url != url():
        timeout = _setting("TRITON_TIMEOUT_S", 60)  # must cover a cold start behind the activator
        current = httpclient.InferenceServerClient(
            url(), connection_timeout=_setting("TRITON_CONNECT_TIMEOUT_S", 5), network_timeout=timeout
        )
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
    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "")
        text = str(exc.message() or "").lower()
        # 503 or "model not ready / unknown model" while the server is still loading.
        return status in ("503", "StatusCode.UNAVAILABLE") or "not ready" in text or "unavailable" in text
    return isinstance(exc, (OSError, ConnectionError, TimeoutError)) or "connection" in type(exc).__name__.lower()


def call(what: str, fn):
    """Run `fn(client)` with retries; map failures to FunctionError/TritonUnavailable."""
    retries = int(_setting("TRITON_RETRIES", 4))
    delay = _setting("TRITON_RETRY_DELAY_S", 0.25)
    for attempt in range(retries + 1):
        try:
            return fn(client())
        except Exception as exc:  # noqa: BLE001 - classified below
            if not _retryable(exc):
                if isinstance(exc, InferenceServerException):
                    log.error("triton rejected %s: %s", what, exc)
                    raise FunctionError(502, "model_error", f"model server rejected {what}: {exc.message()}") from exc
                raise
            _drop_client()  # a fresh connection next time; the old one may be half-closed
            if attempt == retries:
                log.warning("triton unavailable for %s after %d attempts: %s", what, attempt + 1, exc)
                raise TritonUnavailable(f"model server at {url()} is unavailable or waking up; retry shortly") from exc
            time.sleep(delay * (2**attempt))
    raise AssertionError("unreachable")


def _cached(kind: str, model: str, fetch) -> dict:
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
    response = call(f"inference on {model}", lambda c: c.infer(model, tensors, outputs=requested))
    result = InferResult({n: response.as_numpy(n) for n in counts})
    result.model_version = str(response.get_response().get("model_version", ""))
    return result

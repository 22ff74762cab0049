"""The functions' Triton client against real sockets: a server that never answers (a hung or
slowly waking Triton) costs one TRITON_TIMEOUT_S and is not retried; a refused connection (a
restarting Triton) is retried with backoff. Both end in TritonUnavailable (503 + Retry-After)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from common import triton
from common.errors import TritonUnavailable


@pytest.fixture
def silent_server():
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []

    def accept():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()
    for conn in accepted:
        conn.close()


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("TRITON_RETRIES", "3")
    monkeypatch.setenv("TRITON_RETRY_DELAY_S", "0.05")
    monkeypatch.setenv("TRITON_TIMEOUT_S", "0.5")
    yield monkeypatch
    triton._drop_client()


def test_a_timeout_is_not_retried(env, silent_server):
    port, accepted = silent_server
    env.setenv("TRITON_URL", f"127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(TritonUnavailable, match="did not answer within"):
        triton.call("metadata of m", lambda c: c.get_model_metadata("m"))
    elapsed = time.monotonic() - start
    assert 0.4 < elapsed < 1.4, elapsed  # one TRITON_TIMEOUT_S, not four
    assert len(accepted) == 1, "exactly one attempt"


def test_a_refused_connection_is_retried(env):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env.setenv("TRITON_URL", f"127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(TritonUnavailable, match="unavailable or waking up"):
        triton.call("metadata of m", lambda c: c.get_model_metadata("m"))
    # 3 retries after the first attempt, backing off 0.05 + 0.1 + 0.2 s
    assert time.monotonic() - start >= 0.35

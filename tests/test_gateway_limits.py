"""The gateway under overload and hostile clients, driven
over HTTP against a real platform: its gateway, and a real function process (the
python3-http-debian contract) that sleeps on request, from a stack.yml of this test's own with
`max_inflight` and `MAX_BODY_BYTES` set as in the project's stack.yml. No Triton is needed."""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import stat
import textwrap
import time

import pytest
import requests

from sai.local.platform import Platform, Settings
from sai.state import auth_header, credentials_dir, free_port

SLOW = """
import time

def handle(event, context):
    time.sleep(float(event.query.get("s", "0")))
    return {"statusCode": 200, "body": {"bytes": len(event.body)}}
"""

CAP = 1024 * 1024


def _platform(tmp_path_factory, **settings) -> Platform:
    root = tmp_path_factory.mktemp("project")
    (root / "functions" / "slow").mkdir(parents=True)
    (root / "functions" / "slow" / "handler.py").write_text(SLOW)
    (root / "stack.yml").write_text(
        textwrap.dedent(f"""
        version: 1.0
        provider: {{name: openfaas}}
        functions:
          slow:
            lang: python3-http-debian
            handler: ./functions/slow
            image: slow:1
            environment: {{max_inflight: "2", MAX_BODY_BYTES: "{CAP}"}}
        """)
    )
    platform = Platform(
        Settings(
            port=free_port(),
            triton_url="127.0.0.1:9",
            stack_file=root / "stack.yml",
            state_dir=tmp_path_factory.mktemp("state"),
            upstream_timeout_s=30,
            **settings,
        )
    )
    platform.start()
    return platform


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    platform = _platform(tmp_path_factory, max_queued=2, queue_wait_s=5, header_timeout_s=2, body_idle_timeout_s=2)
    yield platform
    platform.stop()


def test_overload_gets_a_fast_429_and_the_platform_keeps_serving(limited):
    """#5: 2 in flight (max_inflight) + 2 waiting; the other 16 of 20 clients get 429 with
    Retry-After at once instead of waiting for the upstream timeout."""
    url = f"{limited.gateway_url}/function/slow?s=1.5"

    def one(_):
        started = time.monotonic()
        r = requests.post(url, data=b"x", timeout=30)
        return r.status_code, time.monotonic() - started, r.headers.get("Retry-After"), r.json()

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    codes = sorted(code for code, *_ in results)
    assert codes == [200] * 4 + [429] * 16, codes
    refused = [r for r in results if r[0] == 429]
    assert all(seconds < 1.0 for _, seconds, _, _ in refused), [round(s, 2) for _, s, _, _ in refused]
    assert all(after == "1" and body["error"]["code"] == "too_many_requests" for _, _, after, body in refused)
    assert requests.post(f"{limited.gateway_url}/function/slow", data=b"x", timeout=10).json() == {"bytes": 1}


def test_a_queued_call_that_gets_no_slot_in_time_gets_503(tmp_path_factory):
    platform = _platform(tmp_path_factory, max_queued=4, queue_wait_s=0.5)
    try:
        url = f"{platform.gateway_url}/function/slow?s=2"
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(lambda _: requests.post(url, data=b"x", timeout=30), range(3)))
        codes = sorted(r.status_code for r in replies)
        assert codes == [200, 200, 503]
        busy = next(r for r in replies if r.status_code == 503)
        assert busy.json()["error"]["code"] == "function_busy" and busy.headers["Retry-After"] == "1"
    finally:
        platform.stop()


def test_the_functions_body_cap_applies_at_the_gateway_before_reading(limited):
    """#4: MAX_BODY_BYTES of the function (1 MiB here) answers 413 from the Content-Length alone,
    or once a chunked body passes it; bodies under it are streamed through whole."""
    url = f"{limited.gateway_url}/function/slow"
    r = requests.post(url, data=b"x" * (CAP + 1), timeout=10)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    r = requests.post(url, data=iter([b"y" * 65536] * 40), timeout=10)  # chunked, 2.5 MiB
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert requests.post(url, data=b"z" * CAP, timeout=10).json() == {"bytes": CAP}
    assert requests.post(url, data=iter([b"w" * 1000] * 100), timeout=10).json() == {"bytes": 100_000}
    r = requests.post(f"{limited.gateway_url}/async-function/slow", data=b"x" * (CAP + 1), timeout=10)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("method", ["TRACE", "OPTIONS", "PROPFIND"])
def test_other_methods_get_a_json_405_with_allow(limited, method):
    r = requests.request(method, f"{limited.gateway_url}/function/slow", timeout=10)
    assert r.status_code == 405 and r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in r.headers["Allow"].split(",")} >= {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closed `sock` (None: still open after `seconds`), sending one
    byte of `trickle` every 0.5 s meanwhile."""
    started = time.monotonic()
    sock.settimeout(0.5)
    for byte in trickle or b"\0" * int(seconds * 2):
        try:
            if trickle:
                sock.send(bytes([byte]))
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - started
        if time.monotonic() - started > seconds:
            return None
    return None


def test_slowloris_connections_are_closed(limited):
    """Headers trickled one byte at a time, or a body that stops: closed after the header
    timeout (2 s here) or answered 408 after the body idle timeout, not held for minutes."""
    port = limited.settings.port
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.send(b"POST /function/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert _closed_within(sock, 8, trickle=b"X-Slow: " + b"a" * 40) is not None
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.send(b"POST /function/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n0123456789")
        sock.settimeout(8)
        started = time.monotonic()
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - started < 6
    assert requests.post(f"{limited.gateway_url}/function/slow", data=b"x", timeout=10).status_code == 200


def test_system_routes_need_the_generated_credentials(limited):
    """#10: basic auth on /system/* as the OpenFaaS gateway has it; /healthz and (by default)
    /function/* stay open. The credentials are files only the owner can read."""
    state = limited.settings.state_dir
    folder = credentials_dir(state)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("basic-auth-user", "basic-auth-password"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    url = f"{limited.gateway_url}/system/functions"
    r = requests.get(url, timeout=10)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="Restricted"'
    assert r.json()["error"]["code"] == "unauthorized"
    assert requests.get(url, auth=("admin", "wrong"), timeout=10).status_code == 401
    assert requests.get(url, headers=auth_header(state), timeout=10).json()[0]["name"] == "slow"
    assert requests.get(f"{limited.gateway_url}/healthz", timeout=10).status_code == 200
    assert requests.post(f"{limited.gateway_url}/function/slow", data=b"x", timeout=10).status_code == 200


def test_function_routes_can_require_auth_too(tmp_path_factory):
    platform = _platform(tmp_path_factory, auth_functions=True)
    try:
        state = platform.settings.state_dir
        for path in ("/function/slow", "/async-function/slow"):
            r = requests.post(platform.gateway_url + path, data=b"x", timeout=10)
            assert r.status_code == 401, path
        ok = requests.post(f"{platform.gateway_url}/function/slow", data=b"x", headers=auth_header(state), timeout=10)
        assert ok.json() == {"bytes": 1}
        assert requests.get(f"{platform.gateway_url}/healthz", timeout=10).status_code == 200
        assert os.path.exists(credentials_dir(state) / "basic-auth-password")
    finally:
        platform.stop()


def _raw(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send `request` as bytes on a fresh connection; (status line, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /function/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nNo colon in this header\r\n\r\n",
        b"GET /function/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
        b"POST /function/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    ],
    ids=["request-line", "header-line", "header-too-long", "two-lengths"],
)
def test_malformed_http_gets_a_json_400(limited, request_bytes):
    """Requests aiohttp rejects before any route runs get the gateway's JSON error (not aiohttp's
    plain text), and the connection is closed; the gateway goes on serving."""
    head, body = _raw(limited.settings.port, request_bytes)
    status_line, *headers = head.decode("latin-1").split("\r\n")
    assert status_line.split()[1] in ("400", "431"), head
    assert "content-type: application/json" in (h.lower() for h in headers), head
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request" and "malformed HTTP request" in error["message"]
    assert "Traceback" not in body.decode()
    assert requests.post(f"{limited.gateway_url}/function/slow", data=b"x", timeout=10).status_code == 200

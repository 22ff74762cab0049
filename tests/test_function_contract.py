"""The local platform runs handlers the way the python3-http-debian template does, behind a
gateway with OpenFaaS routes. A throwaway echo function (its own stack.yml) shows what the
handler receives and how its return value becomes the HTTP response."""

from __future__ import annotations

import textwrap

import pytest
import requests

from sai.local.platform import Platform, Settings
from sai.local.processes import wait_until
from sai.state import auth_header, free_port

ECHO = """
import json
from .common.shared import MARK

def handle(event, context):
    if event.path.endswith("/raw"):
        return {"statusCode": 201, "body": b"\\x00\\x01raw", "headers": {"Content-type": "application/octet-stream"}}
    if event.path.endswith("/text"):
        return {"statusCode": 202, "body": 42, "headers": {"X-Custom": "yes"}}
    if event.path.endswith("/none"):
        return None
    if event.path.endswith("/crash"):
        raise RuntimeError("boom")
    return {
        "statusCode": 200,
        "body": {
            "method": event.method, "path": event.path, "query": event.query.to_dict(flat=False),
            "body": event.body.decode(), "header": event.headers.get("X-Test"), "mark": MARK,
            "hostname": context.hostname,
        },
    }
"""


@pytest.fixture(scope="module")
def echo_platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    (root / "functions" / "echo").mkdir(parents=True)
    (root / "functions" / "echo" / "handler.py").write_text(ECHO)
    (root / "common").mkdir()
    (root / "common" / "shared.py").write_text('MARK = "copied"\n')
    (root / "stack.yml").write_text(
        textwrap.dedent("""
        version: 1.0
        provider: {name: openfaas}
        configuration: {copy: [./common]}
        functions:
          echo: {lang: python3-http-debian, handler: ./functions/echo, image: echo:1, labels: {team: a}}
    """)
    )
    settings = Settings(
        port=free_port(),
        triton_url="127.0.0.1:9",
        stack_file=root / "stack.yml",
        state_dir=tmp_path_factory.mktemp("state"),
        upstream_timeout_s=5,
    )
    platform = Platform(settings)
    platform.start()
    yield platform
    platform.stop()


@pytest.fixture(scope="module")
def echo_gateway(echo_platform):
    return echo_platform.gateway_url


def test_event_fields_subpath_and_query_pass_through(echo_gateway):
    r = requests.put(f"{echo_gateway}/function/echo/a/b?x=1&x=2&y=z", data=b"payload", headers={"X-Test": "t"}, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body == {
        "method": "PUT",
        "path": "/a/b",
        "query": {"x": ["1", "2"], "y": ["z"]},
        "body": "payload",
        "header": "t",
        "mark": "copied",
        "hostname": "echo-0",  # a replica's HOSTNAME is its name, as a pod's is (platform.Replica)
    }
    assert float(r.headers["X-Duration-Seconds"]) > 0


def test_root_path(echo_gateway):
    assert requests.post(f"{echo_gateway}/function/echo", data=b"", timeout=10).json()["path"] == "/"


def test_raw_bytes_only_with_octet_stream(echo_gateway):
    r = requests.post(f"{echo_gateway}/function/echo/raw", timeout=10)
    assert (r.status_code, r.content) == (201, b"\x00\x01raw")


def test_non_dict_body_becomes_text_and_headers_pass(echo_gateway):
    r = requests.post(f"{echo_gateway}/function/echo/text", timeout=10)
    assert (r.status_code, r.text, r.headers["X-Custom"]) == (202, "42", "yes")


def test_none_is_an_empty_200(echo_gateway):
    r = requests.post(f"{echo_gateway}/function/echo/none", timeout=10)
    assert (r.status_code, r.content) == (200, b"")


def test_a_crashing_handler_gives_500_and_the_process_lives_on(echo_gateway):
    """The template itself answers an unwrapped exception with Flask's 500; our handlers wrap
    theirs (common.errors.handler_errors) - this pins the contract underneath."""
    assert requests.post(f"{echo_gateway}/function/echo/crash", timeout=10).status_code == 500
    assert requests.post(f"{echo_gateway}/function/echo", timeout=10).status_code == 200


def test_system_functions_lists_the_stack(echo_platform, echo_gateway):
    auth = auth_header(echo_platform.settings.state_dir)  # /system/* needs the generated credentials
    listed = requests.get(f"{echo_gateway}/system/functions", headers=auth, timeout=10).json()
    assert [f["name"] for f in listed] == ["echo"]
    assert listed[0]["image"] == "echo:1" and listed[0]["labels"] == {"team": "a"}
    assert listed[0]["availableReplicas"] == 1
    requests.post(f"{echo_gateway}/function/echo", timeout=10)
    again = requests.get(f"{echo_gateway}/system/functions", headers=auth, timeout=10).json()
    assert again[0]["invocationCount"] == listed[0]["invocationCount"] + 1
    one = requests.get(f"{echo_gateway}/system/function/echo", headers=auth, timeout=10).json()
    assert one["name"] == "echo"
    assert requests.get(f"{echo_gateway}/system/function/nope", headers=auth, timeout=10).status_code == 404


def test_healthz(echo_gateway):
    r = requests.get(f"{echo_gateway}/healthz", timeout=10)
    assert (r.status_code, r.text) == (200, "OK")


def test_a_killed_function_is_restarted(echo_platform, echo_gateway):
    fn = echo_platform.functions["echo"]
    old_pid = fn.process.pid
    fn.process.kill()
    fn.process.wait()
    r = requests.post(f"{echo_gateway}/function/echo", timeout=10)
    assert r.status_code == 503 and r.json()["error"]["code"] == "function_unavailable"
    assert "Retry-After" in r.headers

    def restarted() -> bool:
        echo_platform.supervise_once()  # what the foreground supervisor does every second
        return fn.process.pid != old_pid

    assert wait_until(restarted, 10)  # after its back-off (1 s for a first death)
    fn.wait_ready()
    assert fn.restarts.count == 1
    assert requests.post(f"{echo_gateway}/function/echo", timeout=10).status_code == 200

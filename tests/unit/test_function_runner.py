"""sai.local.function_runner follows the python3-http-debian template's index.py exactly, at the
pinned version: response rules checked through Flask's test client, no server."""

from __future__ import annotations

import os
import types

import pytest

from sai.local import function_runner

PINNED = "openfaas/python-flask-template@e420a6fbdc800bc95cba982b511677ce2345b057:template/python3-http-debian/index.py"


def test_the_template_version_is_pinned():
    assert function_runner.TEMPLATE == PINNED
    assert "e420a6f" in function_runner.__doc__


def client_for(result):
    handler = types.SimpleNamespace(handle=lambda event, context: result(event, context) if callable(result) else result)
    return function_runner.create_app(handler).test_client()


@pytest.mark.parametrize(
    "result,status,body,content_type",
    [
        (None, 200, b"", "text/html; charset=utf-8"),
        ({"body": {"a": 1}}, 200, b'{"a":1}\n', "application/json"),
        ({"statusCode": 201, "body": 42}, 201, b"42", "text/html; charset=utf-8"),
        ({"statusCode": 204}, 204, b"", None),
        # not a dict: handed to Flask unchanged (the drifted runner called .get on these)
        ("plain text", 200, b"plain text", "text/html; charset=utf-8"),
        (("teapot", 418), 418, b"teapot", "text/html; charset=utf-8"),
        ([1, 2], 200, b"[1,2]\n", "application/json"),
    ],
)
def test_response_rules(result, status, body, content_type):
    r = client_for(result).post("/x")
    assert r.status_code == status and r.data == body
    if content_type:
        assert r.headers["Content-Type"] == content_type


def test_raw_bytes_only_with_the_exact_header_key():
    raw = {"body": b"\x00\x01", "headers": {"Content-type": "application/octet-stream"}}
    assert client_for(raw).post("/").data == b"\x00\x01"
    other_key = {"body": b"\x00\x01", "headers": {"Content-Type": "application/octet-stream"}}
    assert client_for(other_key).post("/").data == b"b'\\x00\\x01'"  # str(body), as the template does


def test_the_event_and_dict_headers():
    def echo(event, context):
        body = {
            "path": event.path,
            "q": event.query.get("k"),
            "m": event.method,
            "b": event.body.decode(),
            "host": context.hostname,
        }
        return {"body": body, "headers": {"X-Echo": "1"}}

    r = client_for(echo).put("/a/b?k=v", data=b"hi")
    assert r.headers["X-Echo"] == "1"
    assert r.get_json() == {"path": "/a/b", "q": "v", "m": "PUT", "b": "hi", "host": os.environ.get("HOSTNAME", "localhost")}


def test_list_headers_fail_as_in_the_template():
    """index.py reads headers["Content-type"] with .get, so a list of pairs is a 500 there too."""
    app = function_runner.create_app(types.SimpleNamespace(handle=lambda e, c: {"body": "x", "headers": [("X-A", "1")]}))
    app.testing = False
    assert app.test_client().post("/").status_code == 500

"""Bad input to image-classify: a clear 4xx JSON error, never a 500 or a traceback, and the
function keeps serving afterwards."""

from __future__ import annotations

import base64

import pytest
import requests
from helpers import encode
from PIL import Image


def post(gateway, data=b"", content_type="image/jpeg", query="", **kw):
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return requests.post(f"{gateway}/function/image-classify{query}", data=data, headers=headers, timeout=30, **kw)


def assert_error(r, status: int, code: str):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == code and error["message"]
    assert "Traceback" not in r.text


def bomb_png() -> bytes:
    """A 9000x9000 (81 MP) PNG: a few KB on the wire, 243 MB once decoded."""
    return encode(Image.new("L", (9000, 9000)), "PNG", optimize=True)


@pytest.mark.parametrize(
    "data,content_type,status,code",
    [
        (b"", "image/jpeg", 400, "empty_body"),
        (b"this is not an image at all", "image/jpeg", 415, "unsupported_image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", 415, "unsupported_image"),
        (b"hello", "text/plain", 415, "unsupported_media_type"),
        (b"{not json", "application/json", 400, "invalid_json"),
        (b'{"image": "***not base64***"}', "application/json", 400, "invalid_base64"),
        (b'{"picture": "AAAA"}', "application/json", 400, "missing_field"),
        (b'["image"]', "application/json", 400, "missing_field"),
        (
            b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
            400,
            "missing_file",
        ),
    ],
)
def test_bad_bodies(gateway, data, content_type, status, code):
    assert_error(post(gateway, data, content_type), status, code)


def test_nested_json_and_infinite_top_k(gateway, coffee_jpeg):
    """Hostile JSON: 100,000 nesting levels (the decoder recurses per level), and top_k=1e309,
    which JSON parses as infinity. Both are the client's fault: 400, not a 500."""
    deep = b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_error(post(gateway, deep, "application/json"), 400, "invalid_json")
    body = b'{"image": "' + base64.b64encode(coffee_jpeg) + b'", "top_k": 1e309}'
    assert_error(post(gateway, body, "application/json"), 400, "invalid_parameter")


def test_truncated_image(gateway, coffee_jpeg):
    assert_error(post(gateway, coffee_jpeg[: len(coffee_jpeg) // 2]), 400, "invalid_image")


def test_decompression_bomb(gateway):
    data = bomb_png()
    assert len(data) < 1_000_000
    assert_error(post(gateway, data, "image/png"), 413, "image_too_large")


def test_body_over_the_function_limit(gateway):
    assert_error(post(gateway, b"\xff" * (20 * 1024 * 1024 + 1)), 413, "body_too_large")


def test_body_over_the_gateway_limit(gateway):
    assert_error(post(gateway, b"\xff" * (33 * 1024 * 1024)), 413, "body_too_large")


@pytest.mark.parametrize("top_k", ["0", "21", "-1", "abc", "2.5", ""])
def test_top_k_out_of_range(gateway, coffee_jpeg, top_k):
    r = post(gateway, coffee_jpeg, query=f"?top_k={top_k}")
    if top_k == "":  # empty means "default"
        assert r.status_code == 200
    else:
        assert_error(r, 400, "invalid_parameter")


@pytest.mark.parametrize("top_k", [0, 21, "5", 2.5, True, None])
def test_top_k_in_json_validated(gateway, coffee_jpeg, top_k):
    r = requests.post(
        f"{gateway}/function/image-classify", json={"image": base64.b64encode(coffee_jpeg).decode(), "top_k": top_k}, timeout=30
    )
    if top_k in ("5", None):
        assert r.status_code == 200, r.text
    else:
        assert_error(r, 400, "invalid_parameter")


def test_wrong_method(gateway):
    assert_error(requests.get(f"{gateway}/function/image-classify", timeout=10), 405, "method_not_allowed")


def test_unknown_function_and_route(gateway):
    assert_error(requests.post(f"{gateway}/function/nope", data=b"x", timeout=10), 404, "function_not_found")
    assert_error(requests.get(f"{gateway}/no/such/route", timeout=10), 404, "not_found")


def test_still_serving_after_bad_input(gateway, coffee_jpeg):
    for _ in range(3):
        post(gateway, b"garbage")
        post(gateway, bomb_png(), "image/png")
    r = post(gateway, coffee_jpeg)
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "espresso"

"""Triton stopped mid-run: functions answer 503 + Retry-After (not 500, no hang), and recover
by themselves once Triton is back."""

from __future__ import annotations

import time

import pytest
import requests

pytestmark = pytest.mark.slow


def test_503_while_triton_is_down_then_recovery(platform, gateway, coffee_jpeg):
    url = f"{gateway}/function/image-classify"
    assert requests.post(url, data=coffee_jpeg, timeout=30).status_code == 200
    platform.stop_triton()
    try:
        start = time.monotonic()
        r = requests.post(url, data=coffee_jpeg, timeout=30)
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) > 0
        assert r.json()["error"]["code"] == "model_server_unavailable"
        assert time.monotonic() - start < 10  # bounded retries, then a prompt answer
    finally:
        platform.start_triton()
    r = requests.post(url, data=coffee_jpeg, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["label"] == "espresso"

"""Triton stopped mid-run: functions answer 503 + Retry-After (not 500, no hang), and recover
by themselves once Triton is back. These tests run on a platform of their own (outage_platform),
so stopping its Triton never disturbs the session-wide one."""

from __future__ import annotations

import time

import pytest
import requests

from sai.local.processes import wait_until

pytestmark = pytest.mark.slow

POSITIVE = "I absolutely loved this movie, the acting was brilliant and the story moving."
PARAGRAPH = (
    "Photosynthesis is the process by which green plants use sunlight to make food. "
    "Chlorophyll in the leaves absorbs light energy, which converts carbon dioxide and water "
    "into glucose and oxygen. Without photosynthesis plants could not grow and the oxygen in "
    "the atmosphere would run out."
)


def test_503_while_triton_is_down_then_recovery(outage_platform, coffee_jpeg):
    platform = outage_platform
    url = f"{platform.gateway_url}/function/image-classify"
    assert requests.post(url, data=coffee_jpeg, timeout=30).status_code == 200
    platform.triton.stop()
    try:
        start = time.monotonic()
        r = requests.post(url, data=coffee_jpeg, timeout=30)
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) > 0
        assert r.json()["error"]["code"] == "model_server_unavailable"
        assert time.monotonic() - start < 10  # bounded retries, then a prompt answer
    finally:
        platform.triton.start()
    r = requests.post(url, data=coffee_jpeg, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["label"] == "espresso"


def test_text_functions_503_while_triton_is_down_then_recovery(outage_platform):
    platform = outage_platform

    def call(name, text):
        return requests.post(f"{platform.gateway_url}/function/{name}", json={"text": text}, timeout=60)

    assert call("text-sentiment", POSITIVE).status_code == 200
    platform.triton.stop()
    try:
        for name in ("text-sentiment", "text-embed", "text-keywords"):
            r = call(name, POSITIVE)
            assert r.status_code == 503, r.text
            assert r.headers.get("Retry-After") and r.json()["error"]["code"]
    finally:
        platform.triton.start()
    r = wait_until(lambda: (r := call("text-sentiment", POSITIVE)).status_code == 200 and r, 60, interval=0.5)
    assert r and r.status_code == 200 and r.json()["label"] == "positive"
    assert call("text-keywords", PARAGRAPH).status_code == 200

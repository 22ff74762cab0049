"""Chaos from the client side against the whole platform (real Triton, real image-classify, the
gateway): a flood of oversized bodies and more clients than max_inflight admits. Each asserts what
clients get and that the platform keeps serving. (Hostile callbacks: test_async_gateway.py.)"""

from __future__ import annotations

import collections
import os

import psutil
import requests

from sai.bench.overload import PeakRss, run_many


def _classifies(gateway: str, image: bytes) -> bool:
    r = requests.post(f"{gateway}/function/image-classify", data=image, timeout=30)
    return r.status_code == 200 and r.json()["predictions"][0]["label"] in ("tiger cat", "tabby, tabby cat", "Egyptian cat")


def test_a_flood_of_oversized_bodies_is_refused_without_buffering(platform, cat_jpeg):
    """#4: 16 bodies of 31 MB (image-classify takes 20 MiB), 8 at a time: each gets 413 and the
    gateway (in this process) does not hold them; before, RSS grew by hundreds of MB."""
    port = platform.settings.port
    body = b"\xff" * (31 * 1000 * 1000)
    start = psutil.Process(os.getpid()).memory_info().rss
    sampler = PeakRss(os.getpid())
    results = run_many(port, "/function/image-classify", body, total=16, concurrency=8, timeout=60)
    growth = sampler.stop() - start
    assert collections.Counter(code for code, _ in results) == {"413": 16}
    assert max(seconds for _, seconds in results) < 10
    assert growth < 100 * 2**20, f"RSS grew by {growth / 2**20:.0f} MiB"
    assert _classifies(platform.gateway_url, cat_jpeg)


def test_more_clients_than_max_inflight_get_fast_429s(platform, cat_jpeg):
    """#5: 96 clients at once on image-classify (max_inflight 8, 16 may wait): every answer is 200
    or 429, a 429 comes at once with Retry-After, and the function serves right after."""
    results = run_many(platform.settings.port, "/function/image-classify", cat_jpeg, total=192, concurrency=96, timeout=60)
    codes = collections.Counter(code for code, _ in results)
    assert set(codes) <= {"200", "429"} and codes["429"] > 0 and codes["200"] >= 24, codes
    assert max(seconds for code, seconds in results if code == "429") < 2
    assert _classifies(platform.gateway_url, cat_jpeg)

"""`sai bench startup`: how long a platform takes to become ready, and its memory.

For `sai up --only image-classify` and for the whole platform: the seconds from launching the
supervisor until it is ready (Triton has loaded its models, every function listens, the gateway
serves: what `sai up` waits for), and the memory of every process (supervisor + gateway, Triton
core, its Python backend stubs, the functions) after 20 warm-up classifications, so the figures
include what the first requests allocate: the sum of RSS (libraries shared between processes
count in each, as `ps` shows them) and of PSS (shared pages split, what the platform occupies).
Medians over `--repeats` starts. Then the whole platform idle: started with a 2 s zero-duration,
once every function and model has gone to zero. Beside them, the same for a plain KServe ModelServer serving
the same ONNX file with the same preprocessing (sai/bench/kserve_server.py), and the ratio of
`--only image-classify` to it.
"""

from __future__ import annotations

import base64
import json
import statistics
import subprocess
import sys
import time
import urllib.request

import psutil

from sai.bench.harness import Client, fmt, memory_mb, print_table, started_platform
from sai.bench.image import photos
from sai.local.processes import terminate_group, wait_until
from sai.state import free_port, port_open, read_state

TARGETS = {"image-classify": (2.0, 450.0), "all": (4.0, None)}  # ready s, total RSS MB (docs/performance.md)
AT_ZERO_TARGET_MB = 250.0  # the whole platform with every function and model at zero
KSERVE_RATIO_TARGET = 2.0  # `--only image-classify` RSS / the KServe ModelServer's


def kserve_baseline() -> tuple[float, float]:
    """(seconds until it serves, RSS MB after 20 classifications) of sai/bench/kserve_server.py."""
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sai.bench.kserve_server", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        failure = lambda: proc.poll() is not None and "the KServe ModelServer exited"  # noqa: E731
        if not wait_until(lambda: port_open("127.0.0.1", port), 120, interval=0.02, fail=failure):
            raise RuntimeError("the KServe ModelServer did not listen within 120 s")
        ready = time.perf_counter() - start
        url = f"http://127.0.0.1:{port}/v1/models/image_classifier:predict"
        images = photos()
        for i in range(20):
            body = json.dumps({"instances": [{"image": {"b64": base64.b64encode(images[i % len(images)]).decode()}}]})
            req = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=60).close()
        return ready, psutil.Process(proc.pid).memory_info().rss / 1e6
    finally:
        terminate_group(proc, 10)


def measure(only: list[str]) -> tuple[float, dict[str, float], float]:
    """Seconds until ready, RSS per process and the PSS total (MB) of one start."""
    with started_platform(only) as (url, state, ready_s):
        client, images = Client(url), photos()
        for i in range(20):
            status, body = client.post("/function/image-classify", images[i % len(images)], "image/jpeg")
            if status != 200:
                raise RuntimeError(f"image-classify answered {status}: {body[:200]!r}")
        return ready_s, memory_mb(state), sum(memory_mb(state, "pss").values())


def measure_at_zero() -> tuple[float, dict[str, float], float]:
    """(seconds until every function and model was at zero, RSS per process, PSS total) of the
    whole platform started with a 2 s zero-duration, after one call of each function's kind."""
    with started_platform([], ["--zero-duration", "2s"]) as (url, state, _ready):
        status, body = Client(url).post("/function/image-classify", photos()[0], "image/jpeg")
        if status != 200:
            raise RuntimeError(f"image-classify answered {status}: {body[:200]!r}")
        start = time.perf_counter()

        def idle() -> bool:
            doc = read_state(state)
            at_zero = not doc["models"]["loaded"] and all(fn["replicas"] == 0 for fn in doc["functions"].values())
            return at_zero and not psutil.Process(doc["triton"]["pid"]).children()  # the stubs have exited

        if not wait_until(idle, 120, interval=0.2):
            raise RuntimeError("the platform did not reach zero within 120 s")
        return time.perf_counter() - start, memory_mb(state), sum(memory_mb(state, "pss").values())


def run(args) -> int:
    rows, out = [], []
    for label, only in (("image-classify", ["image-classify"]), ("all", [])):
        runs = [measure(only) for _ in range(args.repeats)]
        ready = statistics.median(r[0] for r in runs)
        _, mid, pss = sorted(runs, key=lambda r: sum(r[1].values()))[len(runs) // 2]  # the median start by total RSS
        total = sum(mid.values())
        ready_target, rss_target = TARGETS[label]
        rows.append(
            [
                f"sai up --only {label}" if only else "sai up",
                fmt(ready, 2),
                f"<= {ready_target}",
                fmt(total, 0),
                f"<= {rss_target:.0f}" if rss_target else "-",
                fmt(pss, 0),
                ", ".join(f"{k} {v:.0f}" for k, v in mid.items()),
            ]
        )
        out.append({"platform": label, "ready_s": ready, "rss_mb": mid, "rss_total_mb": total, "pss_total_mb": pss})
        print(f"{label}: ready after {ready:.2f} s, {total:.0f} MB", flush=True)
    zero_s, at_zero, zero_pss = measure_at_zero()
    zero_total = sum(at_zero.values())
    rows.append(
        [
            "sai up, every function and model at zero",
            "-",
            "-",
            fmt(zero_total, 0),
            f"<= {AT_ZERO_TARGET_MB:.0f}",
            fmt(zero_pss, 0),
            ", ".join(f"{k} {v:.0f}" for k, v in at_zero.items()),
        ]
    )
    out.append({"platform": "at zero", "rss_mb": at_zero, "rss_total_mb": zero_total, "pss_total_mb": zero_pss})
    print(f"at zero {zero_s:.1f} s after the last call: {zero_total:.0f} MB", flush=True)
    ready, kserve = sorted((kserve_baseline() for _ in range(args.repeats)), key=lambda r: r[1])[args.repeats // 2]
    only = out[0]["rss_total_mb"]
    rows.append(["plain KServe ModelServer, same ONNX file", fmt(ready, 2), "-", fmt(kserve, 0), "-", "-", "one process"])
    out.append({"platform": "kserve", "ready_s": ready, "rss_total_mb": kserve})
    print()
    print_table(["platform", "ready s", "target", "RSS MB", "target", "PSS MB", "RSS per process (MB)"], rows)
    verdict = "met" if only / kserve <= KSERVE_RATIO_TARGET else "not met"
    print(f"\n--only image-classify / KServe ModelServer RSS: {only / kserve:.2f}x (target <= {KSERVE_RATIO_TARGET}x: {verdict})")
    if args.json:
        print(json.dumps(out, indent=2))
    return 0

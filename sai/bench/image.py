"""`sai bench image`: image-classify through the gateway vs the in-process limit, same photos.

In-process limit: decode + preprocess (the functions' own code) + onnxruntime on the same ONNX
file, in one process, `concurrency` threads. Through the gateway: HTTP client -> gateway ->
function process -> Triton -> model. Both closed-loop at concurrency 1, 4 and 8; the ratio of the
two throughputs is the platform's overhead. `--replicas 1,2` measures the gateway at each replica
count of image-classify (scaled through /system/scale-function, as `faas-cli scale` does): replicas
decode in parallel where there are cores for them.
"""

from __future__ import annotations

import io
import json
import urllib.request

import numpy as np

from sai import paths
from sai.bench.common import (
    Client,
    closed_loop,
    cpu_breakdown,
    cpu_seconds,
    fmt,
    median_run,
    platform_or,
    print_table,
)
from sai.models.config import read_config
from sai.state import auth_header

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # scikit-image's bundled photographs


def photos() -> list[bytes]:
    from PIL import Image
    from skimage import data

    out = []
    for name in PHOTOS:
        buf = io.BytesIO()
        Image.fromarray(getattr(data, name)()).convert("RGB").save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def in_process(images: list[bytes], concurrency: int, requests_n: int):
    import onnxruntime as ort

    from common import imaging

    repo = paths.model_repository() / "image_classifier"
    config = local_config(repo)
    spec = imaging.ImageSpec(config)
    session = ort.InferenceSession(str(repo / "1" / "model.onnx"), session_options(config), providers=["CPUExecutionProvider"])

    def work(i, _):
        img = imaging.decode(images[i % len(images)], min_short_side=spec.short_side)
        session.run(["probabilities"], {spec.input: spec.tensor(img)[np.newaxis]})

    closed_loop(work, concurrency, 10)  # warm-up
    return closed_loop(work, concurrency, requests_n)


def session_options(config: dict):
    """The onnxruntime settings Triton's onnx_local backend uses for this model, so both sides
    run the same graph the same way (threads per session, no spinning)."""
    import onnxruntime as ort

    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
    opts.add_session_config_entry("session.intra_op.allow_spinning", params.get("allow_spinning", "0"))
    return opts


def local_config(repo) -> dict:
    """The model's local Triton config (configs/local.pbtxt), as Triton serves it."""
    return read_config(repo / "configs" / "local.pbtxt")


def via_gateway(url: str, images: list[bytes], concurrency: int, requests_n: int):
    def work(i, client):
        status, body = client.post("/function/image-classify", images[i % len(images)], "image/jpeg")
        if status != 200:
            raise RuntimeError(f"image-classify answered {status}: {body[:200]!r}")

    make_client = lambda: Client(url)  # noqa: E731
    closed_loop(work, concurrency, 10, make_state=make_client)  # warm-up
    return closed_loop(work, concurrency, requests_n, make_state=make_client)


def scale(url: str, state, replicas: int) -> None:
    """POST /system/scale-function/image-classify, as `faas-cli scale` sends it (proxy/scale.go)."""
    body = json.dumps({"serviceName": "image-classify", "replicas": replicas, "namespace": "openfaas-fn"}).encode()
    headers = {"Content-Type": "application/json", **auth_header(state or paths.state_dir())}
    req = urllib.request.Request(f"{url}/system/scale-function/image-classify", body, headers, method="POST")
    urllib.request.urlopen(req, timeout=120).close()


def run(args) -> int:
    images = photos()
    levels = [int(c) for c in args.concurrency.split(",")]
    # None: as deployed, not scaled (scaling needs the credentials of the platform's state folder)
    replica_levels = [int(r) for r in args.replicas.split(",")] if args.replicas else [None]
    results, baselines = [], {}
    with platform_or(args.gateway, only=["image-classify"]) as (url, state):
        for r in replica_levels:
            if r is not None:
                scale(url, state, r)
            for c in levels:
                n = args.requests
                if c not in baselines:
                    baselines[c] = median_run([in_process(images, c, n) for _ in range(args.repeats)])
                base = baselines[c]
                gw = median_run([via_gateway(url, images, c, n) for _ in range(args.repeats)])
                results.append((r, c, base, gw))
                print(f"replicas {r}, concurrency {c}: in-process {base.rate:.1f} img/s, gateway {gw.rate:.1f} img/s", flush=True)
        if len(replica_levels) > 1:
            scale(url, state, replica_levels[0])
        if state is not None:  # where the CPU goes, per image, at concurrency 4
            start = cpu_seconds()
            in_process(images, 4, args.requests)
            inproc_ms = (cpu_seconds() - start) * 1e3 / (args.requests + 10)  # + its warm-up
            split = cpu_breakdown(lambda: via_gateway(url, images, 4, args.requests), state, args.requests + 10)
    rows = [
        [
            "-" if r is None else r,
            c,
            fmt(b.rate),
            fmt(g.rate),
            fmt(g.rate / b.rate, 2),
            fmt(g.percentile(50)),
            fmt(g.percentile(99)),
            fmt(b.percentile(50)),
        ]
        for r, c, b, g in results
    ]
    print()
    if state is not None:
        print(
            f"CPU per image at concurrency 4: in-process {inproc_ms:.1f} ms; through the platform "
            f"{sum(split.values()):.1f} ms = " + ", ".join(f"{k} {v:.1f}" for k, v in split.items() if v >= 0.05)
        )
        print()
    print_table(
        [
            "replicas",
            "concurrency",
            "in-process img/s",
            "gateway img/s",
            "ratio",
            "gateway p50 ms",
            "gateway p99 ms",
            "in-process p50 ms",
        ],
        rows,
    )
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "replicas": r,
                        "concurrency": c,
                        "in_process_per_s": b.rate,
                        "gateway_per_s": g.rate,
                        "ratio": g.rate / b.rate,
                        "gateway_p50_ms": g.percentile(50),
                        "gateway_p99_ms": g.percentile(99),
                    }
                    for r, c, b, g in results
                ],
                indent=2,
            )
        )
    return 0

"""`sai bench image`: image-classify through the gateway vs the in-process limit, same photos.

In-process limit: decode + preprocess (the functions' own code) + onnxruntime on the same ONNX
file, in one process, `concurrency` threads. Through the gateway: HTTP client -> gateway ->
function process -> Triton -> model. Both closed-loop at concurrency 1, 4 and 8; the ratio of the
two throughputs is the platform's overhead. `--replicas 1,2` measures the gateway at each replica
count of image-classify (scaled through /system/scale-function, as `faas-cli scale` does): replicas
decode in parallel where there are cores for them.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import urllib.request

import numpy as np

from sai import paths
from sai.bench.harness import (
    Client,
    closed_loop,
    cpu_breakdown,
    cpu_seconds,
    fmt,
    median_run,
    platform_or,
    print_table,
)
from sai.local.processes import wait_until
from sai.local.triton_server import SAI_TRITON_CONFIG
from sai.models.config import read_config
from sai.state import auth_header, free_port, port_open

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
    from common import imaging

    repo = paths.model_repository() / "image_classifier"
    spec = imaging.ImageSpec(local_config(repo))
    session = onnx_session(repo)

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
    """The model's config as the local Triton loads it (configs/<SAI_TRITON_CONFIG>.pbtxt)."""
    return read_config(repo / "configs" / f"{SAI_TRITON_CONFIG()}.pbtxt")


def onnx_session(repo):
    """An onnxruntime session on the model's ONNX file, set up as Triton's onnx_local backend sets
    it up for the same config (threads, spinning, CPU or CUDA as its providers() picks)."""
    import onnxruntime as ort

    config = local_config(repo)
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    providers = ["CPUExecutionProvider"]
    if params.get("execution_provider") == "cuda":  # the GPU variant (sai/bench/gpu.sh)
        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls()
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(repo / "1" / "model.onnx"), session_options(config), providers=providers)


def via_gateway(url: str, images: list[bytes], concurrency: int, requests_n: int, path: str = "/function/image-classify"):
    def work(i, client):
        status, body = client.post(path, images[i % len(images)], "image/jpeg")
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {body[:200]!r}")

    make_client = lambda: Client(url)  # noqa: E731
    closed_loop(work, concurrency, 10, make_state=make_client)  # warm-up
    return closed_loop(work, concurrency, requests_n, make_state=make_client)


def scale(url: str, state, replicas: int) -> None:
    """POST /system/scale-function/image-classify, as `faas-cli scale` sends it (proxy/scale.go)."""
    body = json.dumps({"serviceName": "image-classify", "replicas": replicas, "namespace": "openfaas-fn"}).encode()
    headers = {"Content-Type": "application/json", **auth_header(state or paths.state_dir())}
    req = urllib.request.Request(f"{url}/system/scale-function/image-classify", body, headers, method="POST")
    urllib.request.urlopen(req, timeout=120).close()


@contextlib.contextmanager
def plain_server():
    """Base URL of sai/bench/plain_server.py (one aiohttp process, onnxruntime in-process) on a
    free port, stopped afterwards."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sai.bench.plain_server", "--port", str(port)], stdin=subprocess.DEVNULL)
    try:
        failure = "the plain server exited; see its output above"
        if not wait_until(lambda: port_open("127.0.0.1", port), 60, fail=lambda: proc.poll() is not None and failure):
            raise RuntimeError("the plain server did not listen within 60 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def run(args) -> int:
    images = photos()
    levels = [int(c) for c in args.concurrency.split(",")]
    # None: as deployed, not scaled (scaling needs the credentials of the platform's state folder)
    replica_levels = [int(r) for r in args.replicas.split(",")] if args.replicas else [None]
    results, baselines, plain = [], {}, {}
    with (
        platform_or(args.gateway, only=["image-classify"]) as (url, state),
        plain_server() if args.compare else contextlib.nullcontext() as plain_url,
    ):
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
                line = f"replicas {r}, concurrency {c}: in-process {base.rate:.1f} img/s, gateway {gw.rate:.1f} img/s"
                if plain_url and c not in plain:
                    plain[c] = median_run([via_gateway(plain_url, images, c, n, "/classify") for _ in range(args.repeats)])
                    line += f", plain server {plain[c].rate:.1f} img/s"
                print(line, flush=True)
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
        # On cores the benchmark has to itself throughput follows CPU per image; on shared cores
        # the platform's several processes win a larger share than one process, and ratios rise.
        print(f"CPU-bound ceiling of the ratio (in-process CPU / platform CPU per image): {inproc_ms / sum(split.values()):.2f}")
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
    print()
    first = [(c, b, g) for r, c, b, g in results if r == replica_levels[0]]  # targets and --compare: as deployed
    by_level = {c: (b, g) for c, b, g in first}
    for c, (what, target, value) in {
        4: ("throughput ratio at concurrency 4", 0.85, lambda b, g: g.rate / b.rate),
        1: ("p50 latency at concurrency 1, gateway / in-process", 1.15, lambda b, g: g.percentile(50) / b.percentile(50)),
    }.items():
        if c in by_level:
            got = value(*by_level[c])
            met = got >= target if c == 4 else got <= target
            print(f"target: {what} {'>=' if c == 4 else '<='} {target}: {got:.2f} ({'met' if met else 'NOT met'})")
    if plain:
        print()
        print_table(
            ["concurrency", "plain server img/s", "gateway img/s", "gateway / plain", "plain p50 ms", "gateway p50 ms"],
            [
                [
                    c,
                    fmt(plain[c].rate),
                    fmt(g.rate),
                    fmt(g.rate / plain[c].rate, 2),
                    fmt(plain[c].percentile(50)),
                    fmt(g.percentile(50)),
                ]
                for c, _, g in first
            ],
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
                        "in_process_p50_ms": b.percentile(50),
                        **(
                            {"plain_server_per_s": plain[c].rate, "plain_server_p50_ms": plain[c].percentile(50)} if plain else {}
                        ),
                    }
                    for r, c, b, g in results
                ],
                indent=2,
            )
        )
    return 0

"""Function -> Triton transport alone, for docs/performance.md: tritonclient over HTTP, HTTP with
the input in system shared memory (`tritonclient.utils.shared_memory`), and gRPC, sending
image_classifier's uint8 224x224x3 input and asking for the top 5, as image-classify does.
Prints calls/s, p50 latency and this process's CPU per call; each mode runs twice, alternating.

Run, as the platform's user, against a running platform (`sai status` shows Triton's HTTP port;
the local Triton serves gRPC only on its private socket, sai/local/triton_server.py):
  python -m sai.bench.transport 127.0.0.1:HTTP_PORT unix:.sai/triton/grpc.sock:8001 [calls] [concurrency]
The shared-memory API is closed over HTTP locally, so its region is registered over gRPC.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

MODEL, INPUT, OUTPUT = "image_classifier", "image", "probabilities"
IMAGE = np.random.default_rng(0).integers(0, 255, (1, 224, 224, 3), dtype=np.uint8)


def over_http(url: str):
    import tritonclient.http as http

    client = http.InferenceServerClient(url)

    def call():
        tensor = http.InferInput(INPUT, list(IMAGE.shape), "UINT8")
        tensor.set_data_from_numpy(IMAGE, binary_data=True)
        out = http.InferRequestedOutput(OUTPUT, binary_data=True, class_count=5)
        client.infer(MODEL, [tensor], outputs=[out]).as_numpy(OUTPUT)

    return call


def over_http_shm(url: str, grpc_url: str):
    import tritonclient.grpc as grpc
    import tritonclient.http as http
    import tritonclient.utils.shared_memory as shm

    client, control = http.InferenceServerClient(url), grpc.InferenceServerClient(grpc_url)
    name = f"sai_transport_{os.getpid()}_{threading.get_ident()}"
    region = shm.create_shared_memory_region(name, "/" + name, IMAGE.nbytes)
    control.register_system_shared_memory(name, "/" + name, IMAGE.nbytes)

    def call():
        shm.set_shared_memory_region(region, [IMAGE])
        tensor = http.InferInput(INPUT, list(IMAGE.shape), "UINT8")
        tensor.set_shared_memory(name, IMAGE.nbytes)
        out = http.InferRequestedOutput(OUTPUT, binary_data=True, class_count=5)
        client.infer(MODEL, [tensor], outputs=[out]).as_numpy(OUTPUT)

    call.cleanup = lambda: (control.unregister_system_shared_memory(name), shm.destroy_shared_memory_region(region))
    return call


def over_grpc(url: str):
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(url)

    def call():
        tensor = grpc.InferInput(INPUT, list(IMAGE.shape), "UINT8")
        tensor.set_data_from_numpy(IMAGE)
        out = grpc.InferRequestedOutput(OUTPUT, class_count=5)
        client.infer(MODEL, [tensor], outputs=[out]).as_numpy(OUTPUT)

    return call


def measure(make_call, calls: int, concurrency: int) -> tuple[float, float, float]:
    """(calls/s, p50 ms, CPU ms per call of this process) after 10 warm-up calls per thread."""
    latencies: list[float] = []
    ready = threading.Barrier(concurrency + 1)

    def worker():
        call = make_call()
        for _ in range(10):
            call()
        ready.wait()
        for _ in range(calls // concurrency):
            t = time.perf_counter()
            call()
            latencies.append((time.perf_counter() - t) * 1e3)
        if hasattr(call, "cleanup"):
            call.cleanup()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    ready.wait()
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return len(latencies) / elapsed, sorted(latencies)[len(latencies) // 2], cpu * 1e3 / len(latencies)


def main(argv: list[str]) -> int:
    http_url, grpc_url = argv[0], argv[1]
    calls = int(argv[2]) if len(argv) > 2 else 300
    concurrency = int(argv[3]) if len(argv) > 3 else 1
    modes = [
        ("http", lambda: over_http(http_url)),
        ("http+shm", lambda: over_http_shm(http_url, grpc_url)),
        ("grpc", lambda: over_grpc(grpc_url)),
    ]
    for name, make in modes * 2:
        rate, p50, cpu = measure(make, calls, concurrency)
        print(f"{name:9s} concurrency {concurrency}: {rate:6.1f}/s  p50 {p50:.2f} ms  client CPU {cpu:.2f} ms/call", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

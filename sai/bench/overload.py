"""Hostile load on a local platform, on loopback; prints what it measured.

- flood: N request bodies of 31 MB (over image-classify's 20 MiB MAX_BODY_BYTES), C at a time;
  the gateway's peak and settled RSS (it runs inside the supervisor process) and the answers.
- clients: 2000 photos to image-classify from 256 concurrent clients; status-code counts and
  the slowest answer of each code.

Run: `sai bench overload` (starts its own platform on free ports, image-classify only). The file
also runs alone (`python sai/bench/overload.py`), importing nothing of sai but the state helpers,
so the same measurement can be taken from an older checkout (PYTHONPATH=<checkout>).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import http.client
import io
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from sai.state import free_port, http_ok


def start_platform(state: pathlib.Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    argv = [sys.executable, "-m", "sai", "up", "--foreground", "--port", str(port), "--only", "image-classify"]
    for flag in ("--triton-http-port", "--triton-grpc-port", "--triton-metrics-port"):
        argv += [flag, str(free_port())]
    with open(state / "platform.log", "wb") as log:
        proc = subprocess.Popen(argv, env={**os.environ, "SAI_STATE_DIR": str(state)}, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not (state / "run" / "state.json").exists() or not http_ok(f"http://127.0.0.1:{port}/healthz"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the platform did not start; see {state / 'platform.log'}")
        time.sleep(0.5)
    return proc, port


class PeakRss:
    """Samples a process's RSS every 20 ms on a thread; `peak` in bytes."""

    def __init__(self, pid: int):
        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def post(port: int, path: str, body: bytes, timeout: float) -> tuple[str, float]:
    """(status code, or how the connection ended; seconds) of one POST with Content-Length."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Content-Type", "application/octet-stream")
        conn.endheaders()
        view = memoryview(body)
        try:
            for i in range(0, len(body), 1 << 20):
                conn.send(view[i : i + (1 << 20)])
        except OSError:
            pass  # the server answered early and closed: read what it said
        resp = conn.getresponse()
        resp.read()
        return str(resp.status), time.monotonic() - started
    except TimeoutError:
        return "timeout", time.monotonic() - started
    except OSError as exc:
        return type(exc).__name__, time.monotonic() - started
    finally:
        conn.close()


def run_many(port: int, path: str, body: bytes, total: int, concurrency: int, timeout: float):
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda _: post(port, path, body, timeout), range(total)))


def summary(results) -> str:
    counts = collections.Counter(code for code, _ in results)
    slowest = {code: max(s for c, s in results if c == code) for code in counts}
    return ", ".join(f"{code}: {n} (slowest {slowest[code]:.1f}s)" for code, n in sorted(counts.items()))


def flood(port: int, pid: int, total: int, concurrency: int, mb: int) -> None:
    rss = psutil.Process(pid).memory_info().rss
    body = b"\xff" * (mb * 1000 * 1000)
    sampler = PeakRss(pid)
    started = time.monotonic()
    results = run_many(port, "/function/image-classify", body, total, concurrency, timeout=120)
    wall = time.monotonic() - started
    peak = sampler.stop()
    time.sleep(3)
    settled = psutil.Process(pid).memory_info().rss
    print(
        f"flood: {total} x {mb} MB, {concurrency} at a time, {wall:.1f}s: {summary(results)}\n"
        f"  gateway RSS: before {rss / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB, 3 s after {settled / 2**20:.0f} MiB",
        flush=True,
    )


def clients(port: int, total: int, concurrency: int) -> None:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, "JPEG", quality=90)
    started = time.monotonic()
    results = run_many(port, "/function/image-classify", buf.getvalue(), total, concurrency, timeout=120)
    print(f"clients: {total} photos, {concurrency} concurrent, {time.monotonic() - started:.1f}s: {summary(results)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood", type=int, default=96, help="requests of --mb MB (default: %(default)s)")
    parser.add_argument("--flood-concurrency", type=int, default=48)
    parser.add_argument("--mb", type=int, default=31)
    parser.add_argument("--clients", type=int, default=256, help="concurrent clients (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args(argv)
    state = pathlib.Path(tempfile.mkdtemp(prefix="sai-overload-"))
    proc, port = start_platform(state)
    try:
        if args.flood:
            flood(port, proc.pid, args.flood, args.flood_concurrency, args.mb)
        if args.requests:
            clients(port, args.requests, args.clients)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

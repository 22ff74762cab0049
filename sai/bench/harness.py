"""Benchmark plumbing shared by the image and text benchmarks: closed-loop load at a given
concurrency, latency percentiles, a platform started just for the run, and the table."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

import psutil
from prometheus_client.parser import text_string_to_metric_families

from sai import paths
from sai.local.processes import wait_until
from sai.state import auth_header, free_port, read_state, state_path


@dataclass
class Run:
    items: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    def percentile(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def closed_loop(work, concurrency: int, requests: int, items_per_call: int = 1, make_state=lambda: None) -> Run:
    """`requests` calls of `work(i, state)` spread over `concurrency` threads, each sending its next
    call as soon as the previous answers. `state` is per thread (e.g. an HTTP session)."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    errors: list[BaseException] = []

    def worker() -> None:
        state = make_state()
        while True:
            with lock:
                i = next(counter, None)
            if i is None or errors:
                return
            t = time.perf_counter()
            try:
                work(i, state)
            except BaseException as exc:  # noqa: BLE001 - surfaced below: a failing benchmark must not print figures
                errors.append(exc)
                return
            with lock:
                latencies.append((time.perf_counter() - t) * 1e3)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return Run(items=requests * items_per_call, seconds=elapsed, latencies_ms=latencies)


class Client:
    """A minimal keep-alive HTTP client, one per load thread: the load generator shares the
    machine's two cores with what it measures, so it should cost as little as possible
    (`requests` spends about twice the CPU per call)."""

    def __init__(self, base_url: str):
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        # `sai up --auth-functions` guards /function/*: send the credentials `sai up` wrote.
        self.auth = auth_header(paths.state_dir())

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type, **self.auth}
        try:
            self.conn.request("POST", path, body=body, headers=headers)
            resp = self.conn.getresponse()
            return resp.status, resp.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()  # a dropped keep-alive connection: reconnect once
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            self.conn.request("POST", path, body=body, headers=headers)
            resp = self.conn.getresponse()
            return resp.status, resp.read()


class GatewayAdmin:
    """The platform's gateway as its operator sees it: /system/* with the platform's credentials
    (JSON in and out), and the samples of its /metrics."""

    def __init__(self, url: str, state):
        self.url, self.auth = url, auth_header(state)

    def api(self, method: str, path: str, doc=None):
        body = json.dumps(doc).encode() if doc is not None else None
        req = urllib.request.Request(self.url + path, body, {"Content-Type": "application/json", **self.auth}, method=method)
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read() or b"null")

    def function(self, name: str) -> dict:
        return self.api("GET", f"/system/function/{name}")

    def samples(self, family: str, name: str) -> list:
        """The samples of metric `family` labelled with function `name` (OpenFaaS's `<name>.<namespace>`)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as resp:
            families = text_string_to_metric_families(resp.read().decode())
        return [
            s for f in families if f.name == family for s in f.samples if s.labels.get("function_name") == f"{name}.openfaas-fn"
        ]


def median_run(runs: list[Run]) -> Run:
    """The run with the median rate (repeats smooth out a noisy machine)."""
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


@contextlib.contextmanager
def platform_or(gateway: str | None, only: list[str]):
    """Yield (gateway URL, state folder): the given URL (state None), or a platform started for
    this run (started_platform)."""
    if gateway:
        yield gateway.rstrip("/"), None
        return
    with started_platform(only) as (url, state, _ready_s):
        yield url, state


@contextlib.contextmanager
def started_platform(only: list[str], extra: list[str] = ()):
    """Yield (gateway URL, state folder, seconds until ready) of a platform started for this run
    on free ports, in its own process as `sai up` runs it (so the load generator does not share
    the gateway's GIL), with `extra` options of `sai up`. Ready = the supervisor wrote its state
    file, which it does once Triton has loaded its models, every function listens and the gateway
    serves (what `sai up` waits for)."""
    state = pathlib.Path(tempfile.mkdtemp(prefix="sai-bench-"))
    port = free_port()
    argv = (
        [
            sys.executable,
            "-m",
            "sai",
            "up",
            "--foreground",
            "--port",
            str(port),
            "--triton-http-port",
            str(free_port()),
            "--triton-grpc-port",
            str(free_port()),
            "--triton-metrics-port",
            str(free_port()),
        ]
        + [a for name in only for a in ("--only", name)]
        + list(extra)
    )
    print(f"starting a platform for the benchmark (state in {state}) ...", file=sys.stderr, flush=True)
    with open(state / "platform.log", "wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env={**os.environ, "SAI_STATE_DIR": str(state)}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        failure = f"the benchmark's platform did not start; see {state / 'platform.log'}"
        ready = lambda: state_path(state).exists()  # noqa: E731
        if not wait_until(ready, 300, interval=0.02, fail=lambda: proc.poll() is not None and failure):
            raise RuntimeError(failure)
        yield url, state, time.perf_counter() - start
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def platform_processes(state_dir: pathlib.Path) -> dict[str, int]:
    """Component -> pid of a running platform (from its state.json), Triton's Python backend
    stubs (its child processes) included."""
    state = read_state(state_dir)
    triton = state["triton"]["pid"]
    procs = {"gateway": state["pid"], "triton core": triton}
    procs.update({f"function {name}": fn["pid"] for name, fn in state["functions"].items() if fn["pid"]})  # none at zero
    children = psutil.Process(triton).children()
    procs.update({f"triton stub {i}": child.pid for i, child in enumerate(children, 1)})
    for record in state.get("processes") or []:  # the rest `sai up` runs (the S3 server, NATS for topics)
        if record and record["pid"] not in procs.values() and psutil.pid_exists(record["pid"]):
            procs[psutil.Process(record["pid"]).name()] = record["pid"]
    return procs


def memory_mb(state_dir: pathlib.Path, kind: str = "rss") -> dict[str, float]:
    """Memory (MB, 10^6 bytes) of each platform process: "rss" (resident; libraries shared by
    several processes count in each) or "pss" (shared pages split between their users, so the
    sum is what the platform occupies)."""
    procs = platform_processes(state_dir)
    return {name: getattr(psutil.Process(pid).memory_full_info(), kind) / 1e6 for name, pid in procs.items()}


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one when pid is None)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def cpu_breakdown(run_load, state_dir: pathlib.Path, items: int) -> dict[str, float]:
    """Run `run_load()` and return milliseconds of CPU per item for each platform process and
    for this process (the load generator)."""
    procs = platform_processes(state_dir)
    before = {name: cpu_seconds(pid) for name, pid in procs.items()}
    mine = cpu_seconds()
    run_load()
    out = {"load generator": (cpu_seconds() - mine) * 1e3 / items}
    out.update({name: (cpu_seconds(pid) - before[name]) * 1e3 / items for name, pid in procs.items()})
    return out


def print_table(headers: list[str], rows: list[list]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).rjust(w) for c, w in zip(row, widths)) + " |")


def fmt(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"

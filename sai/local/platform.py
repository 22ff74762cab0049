"""The embedded platform: a real Triton on CPU, one process per function, and the gateway.

`sai up` starts a supervisor in the background (it is `sai up --foreground`, detached) and returns
once everything is ready; the supervisor starts Triton, waits for its models, starts each function
from its build context, serves the gateway, restarts what crashes, and on SIGTERM (`sai down`)
stops it all. Its state (pids, ports, log files) is in `.sai/run/state.json` for `sai status`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import subprocess
import sys
import threading
from dataclasses import dataclass, field

from aiohttp import web

from sai import paths
from sai.local import s3_events, s3_server
from sai.local.async_calls import AsyncCalls
from sai.local.callbacks import CallbackPolicy
from sai.local.gateway import Gateway
from sai.local.processes import tail, terminate_group, wait_until
from sai.local.stack import Function, build_context, load_stack
from sai.local.triton_server import TritonServer
from sai.state import ensure_credentials, free_port, port_open, state_path, write_state

log = logging.getLogger(__name__)


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080  # gateway
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    triton_url: str | None = None  # use this Triton (host:port) instead of starting one
    upstream_timeout_s: float = 60.0
    max_body_bytes: int = 32 * 1024 * 1024
    state_dir: pathlib.Path = field(default_factory=paths.state_dir)
    stack_file: pathlib.Path = field(default_factory=lambda: paths.repo_root() / "stack.yml")
    model_repository: pathlib.Path = field(default_factory=paths.model_repository)
    function_env: dict[str, dict[str, str]] = field(default_factory=dict)  # extra env per function
    only: list[str] | None = None  # start just these functions (default: all in stack.yml)
    with_s3: bool = False  # start a local S3 server (moto) for object-classify
    s3_port: int = 9000
    # Delivery of bucket events to object-classify, with MinIO's webhook timings (s3_events.py).
    s3_event_timeout_s: float = s3_events.RESPONSE_HEADER_TIMEOUT_S
    s3_event_retry_s: float = s3_events.RETRY_INTERVAL_S
    async_concurrency: int = 2  # async calls run at once
    async_queue_limit: int = 100  # accepted-but-unfinished async calls before 429
    callback_allow: list[str] = field(default_factory=list)  # private CIDRs / host:port callbacks may reach
    # Overload and hostile clients (gateway.py, admission.py): max_inflight itself is per
    # function, in stack.yml's environment.
    max_queued: int = 16  # calls per function that may wait for a slot
    queue_wait_s: float = 10.0  # how long one may wait before 503
    max_buffered_bytes: int = 128 * 1024 * 1024  # async bodies held in memory at once
    header_timeout_s: float = 15.0  # a connection must send its request headers (and idle keep-alives last) this long
    body_idle_timeout_s: float = 10.0  # longest pause in a request body
    auth: bool = True  # basic auth on /system/* (credentials in <state>/secrets)
    auth_functions: bool = False  # ... and on /function/*, /async-function/*


class RunningFunction:
    """One function process serving its build context on a loopback port."""

    def __init__(self, spec: Function, context: pathlib.Path, env: dict[str, str], log_path: pathlib.Path):
        self.spec, self.context, self.env, self.log_path = spec, context, env, log_path
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.alive() else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "sai.local.function_runner", "--context", str(self.context), "--port", str(self.port)]
        with open(self.log_path, "ab") as logfile:
            self.process = subprocess.Popen(
                cmd,
                env=self.env,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        def exited() -> str | None:
            return None if self.alive() else f"function {self.spec.name} exited; see {self.log_path}:\n{tail(self.log_path)}"

        if not wait_until(lambda: port_open("127.0.0.1", self.port), timeout, interval=0.05, fail=exited):
            raise TimeoutError(f"function {self.spec.name} not listening after {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None:
            terminate_group(self.process, timeout=5)


class Platform:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.logs = settings.state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.stack = load_stack(settings.stack_file)
        unknown = set(settings.only or []) - set(self.stack.functions)
        if unknown:
            raise ValueError(f"not in {settings.stack_file.name}: {', '.join(sorted(unknown))}")
        self.triton: TritonServer | None = None
        if settings.triton_url is None:
            self.triton = TritonServer(
                model_repository=settings.model_repository,
                work_dir=settings.state_dir / "triton",
                http_port=settings.triton_http_port,
                grpc_port=settings.triton_grpc_port,
                metrics_port=settings.triton_metrics_port,
                host=settings.host,
            )
        self.triton_wanted = True  # False while stopped on purpose (stop_triton), so not restarted
        self.functions: dict[str, RunningFunction] = {}
        # Async invocations, persisted so that accepted calls survive a restart; they call the
        # functions through the gateway's own invoke (so both paths share one upstream client).
        async_calls = AsyncCalls(
            str(settings.state_dir / "async-calls.sqlite"),
            concurrency=settings.async_concurrency,
            queue_limit=settings.async_queue_limit,
            policy=CallbackPolicy(self.own_ports, settings.callback_allow),
        )
        self.credentials = ensure_credentials(settings.state_dir) if settings.auth else None
        self.gateway = Gateway(
            self.functions,
            async_calls,
            settings.upstream_timeout_s,
            settings.max_body_bytes,
            max_queued=settings.max_queued,
            queue_wait_s=settings.queue_wait_s,
            max_buffered_bytes=settings.max_buffered_bytes,
            body_idle_timeout_s=settings.body_idle_timeout_s,
            credentials=self.credentials,
            auth_functions=settings.auth_functions,
        )
        self.s3: s3_server.S3Handle | None = None
        self.s3_notifier: s3_events.Notifier | None = None
        self.s3_watcher: s3_events.Watcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def triton_url(self) -> str:
        return self.settings.triton_url or self.triton.url

    def own_ports(self) -> dict[int, str]:
        """Port -> name of every service of this platform (callbacks may not reach them)."""
        s = self.settings
        ports = {s.port: "gateway"}
        if self.triton is not None:
            ports.update({s.triton_http_port: "Triton HTTP", s.triton_grpc_port: "Triton gRPC"})
            ports[s.triton_metrics_port] = "Triton metrics"
        elif s.triton_url and s.triton_url.rpartition(":")[2].isdigit():
            ports[int(s.triton_url.rpartition(":")[2])] = "Triton HTTP"
        if s.with_s3:
            ports[s.s3_port] = "S3 server"
        ports.update({fn.port: f"function {name}" for name, fn in self.functions.items() if fn.port})
        return ports

    @property
    def gateway_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if port_open(self.settings.host, self.settings.port):
            raise RuntimeError(f"port {self.settings.port} is in use: is the platform already up? (`sai status`)")
        try:
            if self.settings.with_s3:
                self.s3 = s3_server.start_s3(self.settings.state_dir, self.settings.s3_port)
                env = self.settings.function_env.setdefault("object-classify", {})
                env.update(s3_server.function_env(self.s3))
                log.info("local S3 (moto) at %s", self.s3.endpoint)
            self.start_triton()
            self._start_functions()
            self._start_gateway()
            if self.s3 is not None and "object-classify" in self.functions:
                self._start_s3_events(self.functions["object-classify"].spec.environment)
        except BaseException:
            self.stop()
            raise
        self.write_state()
        log.info("platform ready: gateway %s, triton %s", self.gateway_url, self.triton_url)

    def stop(self) -> None:
        for part in (self.s3_watcher, self.s3_notifier):
            if part is not None:
                part.stop()  # undelivered events stay queued on disk
        self._stop_gateway()
        for fn in self.functions.values():
            fn.stop()
        self.triton_wanted = False
        if self.triton is not None:
            self.triton.stop()
        if self.s3 is not None:
            s3_server.stop_s3(self.s3, self.settings.state_dir)
        state_path(self.settings.state_dir).unlink(missing_ok=True)
        log.info("platform stopped")

    def start_triton(self, timeout: float = 180.0) -> None:
        self.triton_wanted = True
        if self.triton is None:
            return
        self.triton.start()
        self.triton.wait_ready(timeout)
        log.info("triton ready at %s", self.triton.url)

    def stop_triton(self) -> None:
        self.triton_wanted = False
        if self.triton is not None:
            self.triton.stop()

    def _function_env(self, spec: Function) -> dict[str, str]:
        env = dict(os.environ)
        env.update(spec.environment)
        env["TRITON_URL"] = self.triton_url  # stack.yml's value is the in-cluster address
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.settings.function_env.get(spec.name, {}))
        return env

    def _start_functions(self) -> None:
        build = self.settings.state_dir / "build"
        for name, spec in self.stack.functions.items():
            if self.settings.only and name not in self.settings.only:
                continue
            context = build_context(self.stack, spec, build / name)
            fn = RunningFunction(spec, context, self._function_env(spec), self.logs / f"function-{name}.log")
            self.functions[name] = fn
            fn.start()
        for fn in self.functions.values():
            fn.wait_ready()
            log.info("function %s listening on port %d", fn.spec.name, fn.port)

    def _start_s3_events(self, env: dict[str, str]) -> None:
        """Bucket notifications as MinIO sends them: the watcher queues an event for each new
        object under object-classify's INPUT_PREFIX, the notifier delivers them (s3_events.py)."""
        self.s3_notifier = s3_events.Notifier(
            self.settings.state_dir,
            f"{self.gateway_url}/function/object-classify",
            header_timeout_s=self.settings.s3_event_timeout_s,
            retry_interval_s=self.settings.s3_event_retry_s,
            auth=self.credentials if self.settings.auth_functions else None,
        )
        self.s3_notifier.start()  # also delivers what was queued before a restart
        self.s3_watcher = s3_events.Watcher(
            self.settings.state_dir,
            self.s3.client(),
            self.s3.bucket,
            prefix=env.get("INPUT_PREFIX", ""),
            skip_prefix=s3_server.RESULTS_PREFIX,
        )
        self.s3_watcher.start()

    # -- gateway (its own event loop thread) -------------------------------------------------------
    def _start_gateway(self) -> None:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                # aiohttp arms keepalive_timeout when a connection opens, and closes it if no
                # request has arrived by then: so it is also the header timeout (slowloris).
                self._runner = web.AppRunner(self.gateway.app, access_log=None, keepalive_timeout=self.settings.header_timeout_s)
                self._loop.run_until_complete(self._runner.setup())
                site = web.TCPSite(self._runner, self.settings.host, self.settings.port, backlog=1024)
                self._loop.run_until_complete(site.start())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                started.set()
                return
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="gateway", daemon=True)
        self._thread.start()
        started.wait(30)
        if failure:
            raise RuntimeError(f"gateway could not start on port {self.settings.port}: {failure[0]}")
        log.info("gateway listening on %s", self.gateway_url)

    def _stop_gateway(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)

    # -- supervision ---------------------------------------------------------------------------------
    def supervise_once(self) -> None:
        """Restart what died (called every second by the foreground supervisor)."""
        with self._lock:
            if self.triton is not None and self.triton_wanted and not self.triton.running():
                log.error("tritonserver died (exit %s); restarting", self.triton.process and self.triton.process.returncode)
                self.triton.stop()
                try:
                    self.start_triton()
                except Exception as exc:  # noqa: BLE001 - keep supervising, try again next tick
                    log.error("triton restart failed: %s", exc)
            for fn in self.functions.values():
                if not fn.alive():
                    fn.restarts += 1
                    log.error("function %s died (exit %s); restarting", fn.spec.name, fn.process and fn.process.returncode)
                    fn.stop()
                    fn.start()
            self.write_state()

    def write_state(self) -> None:
        write_state(
            self.settings.state_dir,
            {
                "pid": os.getpid(),
                "gateway": self.gateway_url,
                "triton": {
                    "url": self.triton_url,
                    "pid": self.triton.process.pid if self.triton and self.triton.process else None,
                    "metrics": f"http://{self.settings.host}:{self.settings.triton_metrics_port}/metrics"
                    if self.triton
                    else None,
                    "log": str(self.triton.log_path) if self.triton else None,
                },
                "functions": {
                    n: {"url": f.url, "pid": f.process.pid if f.process else None, "restarts": f.restarts, "log": str(f.log_path)}
                    for n, f in self.functions.items()
                },
                "s3": self.s3.endpoint if self.s3 else None,
                "s3_events": self.s3_notifier.status() if self.s3_notifier else None,
                "logs": str(self.logs),
            },
        )

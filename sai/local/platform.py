"""The embedded platform: a real Triton on CPU, one process per function, and the gateway.

`sai up` starts a supervisor in the background (it is `sai up --foreground`, detached) and returns
once everything is ready; the supervisor starts Triton, waits for its models, starts each function
from its build context, serves the gateway, restarts what crashes (with back-off, until FAILED) or
hangs (Triton's liveness probe), and on SIGTERM (`sai down`) stops it all. Its children die with it
even after `kill -9` (processes.die_with_parent). Its state (pids with start times, ports, log
files, each component's health) is in `.sai/run/state.json` for `sai status`, `sai up` and `sai down`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from sai import paths
from sai.local import s3_events, s3_server
from sai.local.async_calls import AsyncCalls
from sai.local.callbacks import CallbackPolicy
from sai.local.deployments import (
    MAX_REPLICAS,
    MIN_REPLICAS,
    DeployError,
    Deployments,
    check_request,
    image_base,
    resolve,
    scale_bounds,
)
from sai.local.gateway import Gateway
from sai.local.http_server import JsonErrorsRunner
from sai.local.model_deps import needed_models
from sai.local.processes import Restarts, die_with_parent, identity, listens_on, tail, terminate_group, wait_until
from sai.local.reload import load_left_out, model_fingerprints, reload
from sai.local.secrets_store import SecretStore
from sai.local.stack import Function, Stack, build_context, load_stack
from sai.local.triggers.runtime import Triggers, TriggerSettings
from sai.local.triton_server import TritonServer
from sai.state import (
    ensure_credentials,
    free_port,
    http_ok,
    make_private,
    pid_path,
    port_open,
    read_pid,
    state_path,
    take_lock,
    write_pid,
    write_state,
)

log = logging.getLogger(__name__)


@dataclass
class Settings:
    host: str = "127.0.0.1"  # the gateway's address; Triton and the functions stay on loopback
    allowed_hosts: list[str] = field(default_factory=list)  # Host names it answers to besides localhost, this host's name and IPs
    port: int = 8080  # gateway
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    triton_log_verbose: int = 0  # 1 logs each inference with its request id (the X-Call-Id)
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
    # Supervision: restarts after 1, 2, 4 ... s; FAILED after this many deaths in a row.
    restart_delay_s: float = 1.0
    restart_limit: int = 5
    liveness_failures: int = 3  # failed liveness probes in a row (Triton, a function) before it is killed and restarted
    triggers: TriggerSettings = field(default_factory=TriggerSettings)  # schedules, topics, database changes

    def restarts(self) -> Restarts:
        return Restarts(first_delay_s=self.restart_delay_s, limit=self.restart_limit)


START_TIMEOUT_S = 30.0  # a function process must listen within this; its liveness probe waits as long
PROBE_TIMEOUT_S = 3.0  # as Triton's (TritonServer.probe_timeout_s): a busy process still answers in time


class Replica:
    """One process serving a function's build context on its own loopback port."""

    def __init__(self, name: str, log_path: pathlib.Path):
        self.name, self.log_path = name, log_path  # name: the instance, as /system/logs reports it
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.record: dict | None = None  # pid and start time, for the state file
        self.started_at = 0.0
        self.probe_failures = 0  # liveness probes failed in a row

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, context: pathlib.Path, env: dict[str, str]) -> None:
        self.port = free_port()
        # -I: the interpreter's own start ignores PYTHON* variables, the user's site-packages and the
        # working folder, so it imports only the build context (put on sys.path by the runner), the
        # standard library and the virtual environment: code from the checkout (docs/reliability.md).
        # -u: unbuffered, so the log has each line as it is written.
        cmd = [sys.executable, "-I", "-u", "-m", "sai.local.function_runner", "--context", str(context)]
        cmd += ["--port", str(self.port)]
        with open(self.log_path, "ab") as logfile:
            self.process = subprocess.Popen(
                cmd,
                env={**env, "HOSTNAME": self.name},  # as a pod's hostname is its name (template Context.hostname)
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        self.record = identity(self.process.pid)
        self.started_at, self.probe_failures = time.monotonic(), 0

    def live(self) -> bool:
        """The liveness probe: GET /_/health, the path the watchdog answers in a pod (function_runner).
        A stopped or hung process does not answer in time; one still starting (not listening yet,
        within START_TIMEOUT_S of its start) counts as live."""
        if http_ok(f"http://127.0.0.1:{self.port}/_/health", timeout=PROBE_TIMEOUT_S):
            return True
        return time.monotonic() - self.started_at < START_TIMEOUT_S and not listens_on(self.process.pid, self.port)

    def wait_ready(self, timeout: float) -> None:
        def exited() -> str | None:
            return None if self.alive() else f"function {self.name} exited; see {self.log_path}:\n{tail(self.log_path)}"

        if not wait_until(lambda: listens_on(self.process.pid, self.port), timeout, interval=0.05, fail=exited):
            raise TimeoutError(f"function {self.name} not listening after {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None:
            terminate_group(self.process, timeout=5)


class RunningFunction:
    """A function's replicas: `wanted` processes of one build context, which the gateway calls in
    turn (`url` gives the next live one). Replica 0 logs to `log_path`, replica i to
    `<log_path stem>.<i>.log`."""

    def __init__(
        self,
        spec: Function,
        context: pathlib.Path,
        env: dict[str, str],
        log_path: pathlib.Path,
        restarts: Restarts,
        replicas: int | None = None,
    ):
        self.spec, self.context, self.env, self.log_path = spec, context, env, log_path
        self.restarts = restarts
        self.wanted = replicas if replicas is not None else scale_bounds(spec)[0]
        self.replicas: list[Replica] = []  # replaced, never changed in place: the gateway thread reads it
        self._turn = 0

    def _replica(self, i: int) -> Replica:
        path = self.log_path if i == 0 else self.log_path.with_name(f"{self.log_path.stem}.{i}.log")
        return Replica(f"{self.spec.name}-{i}", path)

    @property
    def process(self) -> subprocess.Popen | None:  # replica 0's: the tests' and the supervisor's handle
        return self.replicas[0].process if self.replicas else None

    @property
    def port(self) -> int:
        return self.replicas[0].port if self.replicas else 0

    @property
    def url(self) -> str | None:
        """The next live replica's base URL, round robin (None when none is up)."""
        live = [r for r in self.replicas if r.alive()]
        if not live:
            return None
        self._turn = (self._turn + 1) % len(live)
        return f"http://127.0.0.1:{live[self._turn].port}"

    def available(self) -> int:
        return sum(r.alive() for r in self.replicas)

    def alive(self) -> bool:
        """Every wanted replica runs (the supervisor restarts the others)."""
        return len(self.replicas) == self.wanted and all(r.alive() for r in self.replicas)

    def dead_process(self) -> subprocess.Popen | None:
        return next((r.process for r in self.replicas if not r.alive()), None)

    def start(self) -> None:
        """Start what is missing: dead replicas and those up to `wanted`; stop those past it."""
        keep = self.replicas[: self.wanted]
        for extra in self.replicas[self.wanted :]:
            extra.stop()
        replicas = keep + [self._replica(i) for i in range(len(keep), self.wanted)]
        for r in replicas:
            if not r.alive():
                r.stop()  # its process group, should a child outlive it
                r.start(self.context, self.env)
        self.replicas = replicas

    def scale(self, replicas: int, timeout: float = START_TIMEOUT_S) -> None:
        self.wanted = replicas
        self.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        for r in self.replicas:
            r.wait_ready(timeout)

    def records(self) -> list[dict | None]:
        return [r.record for r in self.replicas]

    def stop(self) -> None:
        for r in self.replicas:
            r.stop()


class Platform:
    def __init__(self, settings: Settings):
        self.settings = settings
        make_private(settings.state_dir)
        self.logs = settings.state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        # stack.yml with what the API deployed, removed and scaled (sai/local/deployments.py)
        self.deployments = Deployments.load(settings.state_dir)
        self.secret_store = SecretStore(settings.state_dir)
        self.stack = self.load_stack()
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
                model_control=True,  # model load/unload for `sai reload`, on a private socket
                log_verbose=settings.triton_log_verbose,
                models=self._needed_models(),
            )
        self.model_fingerprints: dict[str, str] = {}  # of the models Triton loaded (sai/local/reload.py)
        self.models_left_out: set[str] = set()  # in the repository at start, not loaded (--only)
        self.triton_wanted = True  # False while stopped on purpose (stop_triton), so not restarted
        self.triton_restarts = settings.restarts()
        self.triton_probe_failures = 0  # liveness probes failed in a row
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
            control=self,  # the /system/* API deploys, scales and removes through this platform
            allowed_hosts=[settings.host, *settings.allowed_hosts],
        )
        self.gateway.metrics.restarts = self.restart_counts
        self.s3: s3_server.S3Handle | None = None
        self.s3_notifier: s3_events.Notifier | None = None
        self.s3_watcher: s3_events.Watcher | None = None
        # Triggers (sai/local/triggers): cron schedules, message topics, database changes; they
        # reach functions through the gateway, like OpenFaaS's connectors.
        self.triggers = Triggers(
            settings.triggers,
            settings.state_dir,
            self.gateway_url,
            self.credentials,
            settings.auth_functions,
            settings.upstream_timeout_s,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: JsonErrorsRunner | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._state_lock: int | None = None  # the state folder's lock (sai.state.take_lock), while started

    def restart_counts(self) -> dict[str, int]:
        """Restarts by the supervisor per component, for the gateway's metrics."""
        counts = {"tritonserver": self.triton_restarts.count} if self.triton is not None else {}
        return counts | {name: fn.restarts.count for name, fn in self.functions.items()}

    def _needed_models(self) -> list[str] | None:
        """With --only, just the models its functions call (less memory, faster ready); else all."""
        if not self.settings.only:
            return None
        specs = [self.stack.functions[n] for n in self.settings.only]
        return needed_models(specs, self.settings.model_repository)

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
        ports.update({r.port: f"function {r.name}" for fn in self.functions.values() for r in fn.replicas if r.port})
        return ports

    @property
    def gateway_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        # Before anything touches the state folder: raises PlatformRunning if another platform has it.
        ports = {name: port for port, name in self.own_ports().items()} | {"gateway": self.gateway_url}
        self._state_lock = take_lock(self.settings.state_dir, {"ports": ports})
        if port_open(self.settings.host, self.settings.port):
            self._release_state()
            raise RuntimeError(f"port {self.settings.port} is in use: is the platform already up? (`sai status`)")
        try:
            if self.settings.with_s3:
                self.s3 = s3_server.start_s3(self.settings.state_dir, self.settings.s3_port)
                env = self.settings.function_env.setdefault("object-classify", {})
                env.update(s3_server.function_env(self.s3))
                log.info("local S3 (moto) at %s", self.s3.endpoint)
            # Functions start while Triton loads its models: they need it only per request.
            fingerprints = self._launch_triton()
            self._start_functions()
            self._await_triton(fingerprints)
            self._start_gateway()
            if self.s3 is not None and "object-classify" in self.functions:
                self._start_s3_events(self.functions["object-classify"].spec.environment)
            self.triggers.start({name: fn.spec.annotations for name, fn in self.functions.items()})  # triggers hook
        except BaseException:
            self.stop()
            raise
        self.write_state()
        write_pid(self.settings.state_dir, os.getpid())
        log.info("platform ready: gateway %s, triton %s", self.gateway_url, self.triton_url)

    def stop(self) -> None:
        self.triggers.stop()  # triggers hook: before the gateway they call
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
        self._release_state()
        log.info("platform stopped")

    def _release_state(self) -> None:
        """Remove this platform's state and pid files, then let the state folder go (never another's)."""
        if self._state_lock is None:
            return
        state_path(self.settings.state_dir).unlink(missing_ok=True)
        if read_pid(self.settings.state_dir) == os.getpid():
            pid_path(self.settings.state_dir).unlink(missing_ok=True)
        os.close(self._state_lock)
        self._state_lock = None

    def start_triton(self, timeout: float = 180.0) -> None:
        self._await_triton(self._launch_triton(), timeout)

    def _launch_triton(self) -> dict[str, str] | None:
        """Start Triton (if this platform runs one); the fingerprints of the models it loads."""
        self.triton_wanted = True
        if self.triton is None:
            return None
        every = model_fingerprints(self.settings.model_repository)
        # What this Triton loads, so that reload compares just those; the rest (--only) stays
        # out until a function calls it, while models new to the repository load on reload.
        fingerprints = {n: f for n, f in every.items() if self.triton.models is None or n in self.triton.models}
        self.models_left_out = set(every) - set(fingerprints)
        self.triton.start()
        return fingerprints

    def _await_triton(self, fingerprints: dict[str, str] | None, timeout: float = 180.0) -> None:
        if self.triton is None:
            return
        self.triton.wait_ready(timeout)
        self.model_fingerprints = fingerprints
        log.info("triton ready at %s", self.triton.url)

    def reload(self) -> dict:
        """Load new/changed models, start new functions, restart changed ones (`sai reload`)."""
        with self._lock:
            report = reload(self, RunningFunction)
            self.write_state()
        return report

    def stop_triton(self) -> None:
        self.triton_wanted = False
        if self.triton is not None:
            self.triton.stop()

    def load_stack(self) -> Stack:
        """stack.yml as the API changed it: what runs."""
        return self.deployments.apply(load_stack(self.settings.stack_file))

    def _function_env(self, spec: Function) -> dict[str, str]:
        env = dict(os.environ)
        env.update(spec.environment)
        env["TRITON_URL"] = self.triton_url  # stack.yml's value is the in-cluster address
        if spec.secrets:  # where /var/openfaas/secrets is mounted in a pod (secrets_store.py)
            env["SECRETS_DIR"] = str(self.secret_store.mount(spec.name, spec.secrets))
        for key in dict.fromkeys((image_base(spec.image), spec.name)):  # its code's (--with-s3), then its own
            env.update(self.settings.function_env.get(key, {}))
        return env

    def _new_function(self, spec: Function) -> RunningFunction:
        """A function's replicas (not started) on a fresh build context."""
        context = build_context(self.stack, spec, self.settings.state_dir / "build" / spec.name)
        log_path = self.logs / f"function-{spec.name}.log"
        replicas = self.deployments.replicas.get(spec.name)
        return RunningFunction(spec, context, self._function_env(spec), log_path, self.settings.restarts(), replicas)

    def _start_functions(self) -> None:
        self.secret_store.prune(self.stack.functions)  # copies of functions removed while it was down
        for name, spec in self.stack.functions.items():
            if self.settings.only and name not in self.settings.only:
                continue
            fn = self.functions[name] = self._new_function(spec)
            fn.start()
        for fn in self.functions.values():
            fn.wait_ready()
            log.info("function %s listening on port %d (%d replicas)", fn.spec.name, fn.port, fn.wanted)

    # -- the API's deploy, remove and scale (sai/local/system_api.py) ---------------------------------
    def deploy(self, request, update: bool) -> None:
        """POST (create) or PUT (update: restart) /system/functions; DeployError says why not."""
        checked = check_request(request)
        name = checked["service"]
        with self._lock:
            if update and name not in self.functions:
                raise DeployError(404, "function_not_found", f"no function named {name!r} to update")
            if not update and name in self.functions:
                raise DeployError(400, "function_exists", f"function {name!r} exists; update it with PUT")
            missing = [s for s in checked["secrets"] if not self.secret_store.exists(s)]
            if missing:
                raise DeployError(400, "secret_not_found", f"no secret named {', '.join(missing)}; create it first")
            spec = resolve(self.stack, checked)
            if failed := load_left_out(self, [spec]):  # models `sai up --only` left out at start
                raise DeployError(500, "model_error", f"{name!r} needs models Triton could not load: {failed}")
            self.deployments.deploy(checked)
            self.stack.functions[name] = spec
            if (running := self.functions.get(name)) is not None:
                running.stop()  # before its build context is rewritten
            fn = self._new_function(spec)
            fn.start()
            self.functions[name] = fn
            self.gateway.forget(name)  # its max_inflight may have changed
            self.write_state()
            try:
                fn.wait_ready()
            except (TimeoutError, RuntimeError) as exc:  # left to the supervisor's restarts
                raise DeployError(500, "function_not_started", str(exc)) from None
        log.info("function %s %s from %s", name, "updated" if update else "deployed", spec.handler)

    def remove(self, name: str) -> None:
        """DELETE /system/functions: stop it and forget it (also across `sai up`)."""
        with self._lock:
            if name not in self.functions:
                raise DeployError(404, "function_not_found", f"no function named {name!r}")
            self.functions.pop(name).stop()
            self.secret_store.unmount(name)
            self.gateway.forget(name)
            self.stack.functions.pop(name, None)
            self.deployments.remove(name, in_stack=name in load_stack(self.settings.stack_file).functions)
            self.write_state()
        log.info("function %s removed", name)

    def scale(self, name: str, replicas: int) -> int:
        """Run `replicas` processes of `name` (clamped to 1..5, as OpenFaaS CE's gateway does in
        gateway/scaling/ranges.go); returns the count now running."""
        replicas = min(max(replicas, MIN_REPLICAS), MAX_REPLICAS)
        with self._lock:
            if name not in self.functions:
                raise DeployError(404, "function_not_found", f"no function named {name!r}")
            fn = self.functions[name]
            if replicas != fn.wanted:
                fn.scale(replicas)
                self.deployments.scale(name, replicas)
                self.write_state()
                log.info("function %s scaled to %d replicas", name, replicas)
        return replicas

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
                self._runner = JsonErrorsRunner(
                    self.gateway.app, access_log=None, keepalive_timeout=self.settings.header_timeout_s
                )
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
        """Restart what died or hangs, with back-off (called every second by the foreground supervisor)."""
        with self._lock:
            if self.triton is not None and self.triton_wanted:
                self._supervise_triton()
            for fn in self.functions.values():
                if fn.alive():
                    self._probe_function(fn)
                if not fn.alive():
                    self._restart(fn.spec.name, fn.dead_process(), fn.restarts, fn.log_path, fn.start)
            self.triggers.supervise()  # triggers hook: their broker
            self.write_state()

    def _probe_function(self, fn: RunningFunction) -> None:
        """Kill a replica that failed its liveness probe `liveness_failures` times in a row (a
        SIGSTOPped or hung process): the next round restarts it as a death, with back-off."""
        for r in fn.replicas:
            if r.live():
                r.probe_failures = 0
                continue
            r.probe_failures += 1
            log.warning("function %s liveness probe failed (%d in a row)", r.name, r.probe_failures)
            if r.probe_failures >= self.settings.liveness_failures:
                log.error("function %s hangs: %d liveness probes failed in a row; killing it", r.name, r.probe_failures)
                terminate_group(r.process, 0)  # a stopped process ignores SIGTERM

    def _supervise_triton(self) -> None:
        triton = self.triton
        if triton.running() and self.triton_restarts.next_at is None:
            if triton.live():
                self.triton_probe_failures = 0
                return
            self.triton_probe_failures += 1
            log.warning("triton liveness probe failed (%d in a row)", self.triton_probe_failures)
            if self.triton_probe_failures < self.settings.liveness_failures:
                return
            log.error("triton hangs: %d liveness probes failed in a row; killing it", self.triton_probe_failures)
            triton.kill()

        def restart() -> None:
            triton.stop()  # its backend stubs too
            self.triton_probe_failures = 0
            self.start_triton()

        self._restart("tritonserver", triton.process, self.triton_restarts, triton.log_path, restart)

    @staticmethod
    def _restart(name: str, process, restarts: Restarts, log_path: pathlib.Path, restart) -> None:
        """Note the death of `name`; restart it when its back-off has passed, never once FAILED."""
        if restarts.died():
            code = process and process.poll()
            if restarts.failed:
                log.error(
                    "%s died %d times in a row (exit %s); giving up: FAILED, see %s", name, restarts.in_a_row, code, log_path
                )
            else:
                log.error("%s died (exit %s); restarting in %.1f s", name, code, restarts.next_at - time.monotonic())
        if restarts.due():
            restarts.restarted()
            try:
                restart()
            except Exception as exc:  # noqa: BLE001 - a failed start counts as a death on the next tick
                log.error("%s restart failed: %s", name, exc)

    def write_state(self) -> None:
        triton, s3 = self.triton, self.s3

        def health(restarts: Restarts, log_path) -> dict:
            failed = {"last_log": tail(pathlib.Path(log_path), 15)} if restarts.failed else {}
            return {"state": restarts.state, "restarts": restarts.count, **failed}

        write_state(
            self.settings.state_dir,
            {
                "pid": os.getpid(),
                "ready": True,  # written once start() has seen every component ready
                "gateway": self.gateway_url,
                "triton": {
                    "url": self.triton_url,
                    "pid": triton.process.pid if triton and triton.process else None,
                    "metrics": f"http://127.0.0.1:{self.settings.triton_metrics_port}/metrics" if triton else None,
                    "log": str(triton.log_path) if triton else None,
                    "liveness_failures": self.triton_probe_failures,
                    **(health(self.triton_restarts, triton.log_path) if triton else {}),
                },
                "functions": {
                    n: {
                        "url": f"http://127.0.0.1:{f.port}" if f.process and f.process.poll() is None else None,  # replica 0's
                        "pid": f.process.pid if f.process else None,
                        "replicas": f.wanted,
                        "available_replicas": f.available(),
                        "liveness_failures": max((r.probe_failures for r in f.replicas), default=0),
                        "log": str(f.log_path),
                        **health(f.restarts, f.log_path),
                    }
                    for n, f in self.functions.items()
                },
                "s3": s3.endpoint if s3 else None,
                "s3_events": self.s3_notifier.status() if self.s3_notifier else None,
                "triggers": self.triggers.status(),
                "logs": str(self.logs),
                # Every process of ours with its start time: `sai up` and `sai down` stop these (and
                # what they started) after a hard kill, and never a process that reused a pid.
                "processes": [
                    identity(os.getpid()),
                    triton.record if triton else None,
                    *(record for f in self.functions.values() for record in f.records()),
                    identity(s3.pid) if s3 else None,
                    *self.triggers.records(),
                ],
            },
        )

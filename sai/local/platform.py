"""The embedded platform: a real Triton on CPU, one process per function, and the gateway.

`sai up` starts a supervisor in the background (`sai up --foreground` with the settings file it
wrote, detached) and returns once everything is ready; the supervisor starts Triton, waits for its
models, starts each function from its build context, serves the gateway, restarts what crashes
(with back-off, until FAILED) or hangs (Triton's liveness probe), and on SIGTERM (`sai down`) stops
it all. Its children die with it even after `kill -9` (processes.die_with_parent). Its state (pids
with start times, ports, log files, each component's health, its settings) is in
`.sai/run/state.json` for `sai status`, `sai up` and `sai down`.

`Platform` only combines the parts; each piece of state has one owner:

  owner                                   owns                                          runs on
  FunctionFleet        fleet.py           the functions, their replicas, the stack,     the supervisor thread
                                          deployments, secrets
  TritonSupervisor     triton_supervisor  the tritonserver process, its restarts and    the supervisor thread
                                          probes, the models loaded and left out
  GatewayThread        gateway_thread.py  the event loop serving the Gateway, its       its own thread
                                          /system API and AsyncCalls
  AsyncCalls           async_calls.py     the async-call queue; its SQLite connection   the gateway loop; one DB thread
  s3 Watcher/Notifier  s3_events.py       bucket events on disk                         a thread each
  Triggers             triggers/          schedules, topics (and their NATS broker),    its own event loop thread
                                          database relays
  Platform             here               the lock, the S3 server, the state file       the supervisor thread

Every change (supervise_once every second, reload on SIGHUP, and the API's deploy, remove and
scale, which the gateway runs in a worker thread) holds `lock`, so changes happen one at a time.
The gateway's loop reads without the lock: `fleet.functions` by single lookups or a copy (atomic
under the GIL), each function's `replicas` list, which is replaced and never changed in place, and
the restart counts for its metrics. The S3 parts and the triggers talk to the gateway over HTTP only.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import threading

from sai.local import s3_events, s3_server
from sai.local.async_calls import AsyncCalls
from sai.local.callbacks import CallbackPolicy
from sai.local.deployments import DeployError
from sai.local.fleet import FunctionFleet
from sai.local.function_replicas import RunningFunction
from sai.local.gateway import Gateway
from sai.local.gateway_thread import GatewayThread
from sai.local.model_deps import needed_models
from sai.local.on_demand import OnDemand
from sai.local.platform_settings import Settings
from sai.local.processes import identity
from sai.local.scaler import Scaler
from sai.local.secrets_store import SecretStore
from sai.local.triggers.runtime import Triggers
from sai.local.triton_supervisor import TritonSupervisor
from sai.state import (
    ensure_credentials,
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

__all__ = ["Platform", "Settings"]


class Platform:
    def __init__(self, settings: Settings):
        self.settings = settings
        make_private(settings.state_dir)
        self.lock = threading.Lock()
        self.fleet = FunctionFleet(settings)
        self.triton = TritonSupervisor(settings, self._first_models())
        self.fleet.triton_url = self.triton.url
        # Async invocations, persisted so that accepted calls survive a restart; they call the
        # functions through the gateway's own invoke (so both paths share one upstream client).
        async_calls = AsyncCalls(
            str(settings.state_dir / "async-calls.sqlite"),
            concurrency=settings.async_concurrency,
            queue_limit=settings.async_queue_limit,
            policy=CallbackPolicy(self.own_ports, settings.callback_allow),
        )
        self.credentials = ensure_credentials(settings.state_dir) if settings.auth else None
        # Scale to zero, wake on request, scale out: on the gateway's loop, changing processes and
        # models through the owners, under the lock (scaler.py, on_demand.py).
        self.on_demand = OnDemand(settings, self.lock, self.fleet, self.triton, self.write_state)
        self.scaler = Scaler(self.fleet.functions, self.on_demand, settings.wake_timeout_s)
        # control: the /system/* API deploys, scales and removes through this platform
        self.gateway = Gateway(self.fleet.functions, async_calls, settings, self.credentials, control=self, scaler=self.scaler)
        self.gateway.metrics.restarts = self.restart_counts
        self.gateway_thread = GatewayThread(self.gateway.app, settings.host, settings.port, settings.header_timeout_s)
        self._state_lock: int | None = None  # the state folder's lock (sai.state.take_lock), while started
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

    def _first_models(self) -> list[str] | None:
        """The models Triton loads at start (None: all): with --only those its functions call,
        with a models budget only those of the functions that start with replicas (less memory,
        faster ready); the rest load when a function needs them."""
        specs = self.fleet.specs()
        if self.settings.models_memory_mb is not None:
            specs = [s for s in specs if self.fleet.initial_replicas(s) > 0]
        elif not self.settings.only:
            return None
        return needed_models(specs, self.settings.model_repository) if specs else []

    # -- what the parts and the API read --------------------------------------------------------------
    @property
    def functions(self) -> dict[str, RunningFunction]:
        return self.fleet.functions

    @property
    def secret_store(self) -> SecretStore:
        return self.fleet.secret_store

    @property
    def logs(self) -> pathlib.Path:
        return self.fleet.logs

    @property
    def triton_url(self) -> str:
        return self.triton.url

    @property
    def gateway_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def restart_counts(self) -> dict[str, int]:
        """Restarts by the supervisor per component, for the gateway's metrics."""
        counts = {"tritonserver": self.triton.restarts.count} if self.triton.server is not None else {}
        return counts | self.fleet.restart_counts()

    def own_ports(self) -> dict[int, str]:
        """Port -> name of every service of this platform (callbacks may not reach them)."""
        s = self.settings
        ports = {s.port: "gateway"}
        if self.triton.server is not None:
            ports.update({s.triton_http_port: "Triton HTTP", s.triton_grpc_port: "Triton gRPC"})
            ports[s.triton_metrics_port] = "Triton metrics"
        elif s.triton_url and s.triton_url.rpartition(":")[2].isdigit():
            ports[int(s.triton_url.rpartition(":")[2])] = "Triton HTTP"
        if s.with_s3:
            ports[s.s3_port] = "S3 server"
        return ports | self.fleet.ports()

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
                self.fleet.extra_env.setdefault("object-classify", {}).update(s3_server.function_env(self.s3))
                log.info("local S3 (moto) at %s", self.s3.endpoint)
            # Functions start while Triton loads its models: they need it only per request.
            fingerprints = self.triton.launch()
            self.fleet.start()
            self.triton.await_ready(fingerprints)
            self.gateway_thread.start()
            if self.s3 is not None and "object-classify" in self.fleet.functions:
                self._start_s3_events(self.fleet.functions["object-classify"].spec.environment)
            self.triggers.start({name: fn.spec.annotations for name, fn in self.fleet.functions.items()})
        except BaseException:
            self.stop()
            raise
        self.write_state()
        write_pid(self.settings.state_dir, os.getpid())
        log.info("platform ready: gateway %s, triton %s", self.gateway_url, self.triton_url)

    def stop(self) -> None:
        self.triggers.stop()  # before the gateway they call
        for part in (self.s3_watcher, self.s3_notifier):
            if part is not None:
                part.stop()  # undelivered events stay queued on disk
        self.gateway_thread.stop()
        self.fleet.stop()
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

    def _start_s3_events(self, env: dict[str, str]) -> None:
        """Bucket notifications as MinIO sends them: the watcher queues an event for each new
        object under object-classify's INPUT_PREFIX, the notifier delivers them (s3_events.py)."""
        assert self.s3 is not None
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

    # -- changes: supervision, reload, the API (each under the lock) ------------------------------------
    def supervise_once(self) -> None:
        """Restart what died or hangs, with back-off (called every second by the foreground supervisor)."""
        with self.lock:
            self.triton.supervise()
            self.fleet.supervise()
            self.triggers.supervise()  # their broker
            self.write_state()

    def reload(self) -> dict:
        """Load new/changed models, start new functions, restart changed ones (`sai reload`)."""
        with self.lock:
            report = {"models": self.triton.reload(self.fleet.upcoming), "functions": self.fleet.reload()}
            self.write_state()
        log.info("reload: %s", json.dumps(report))
        return report

    def deploy(self, request: object, update: bool) -> None:
        """POST (create) or PUT (update: restart) /system/functions; DeployError says why not."""
        with self.lock:
            checked, spec = self.fleet.check_deploy(request, update)
            # models `sai up --only` left out at start (one that starts at zero loads them on its first call)
            if self.fleet.initial_replicas(spec) and (failed := self.triton.load_for([spec])):
                raise DeployError(500, "model_error", f"{spec.name!r} needs models Triton could not load: {failed}")
            fn = self.fleet.deploy(checked, spec)
            self.gateway.forget(spec.name)  # its max_inflight may have changed
            self.write_state()
            try:
                fn.wait_ready()
            except (TimeoutError, RuntimeError) as exc:  # left to the supervisor's restarts
                raise DeployError(500, "function_not_started", str(exc)) from None
        log.info("function %s %s from %s", spec.name, "updated" if update else "deployed", spec.handler)

    def remove(self, name: str) -> None:
        """DELETE /system/functions: stop it and forget it (also across `sai up`)."""
        with self.lock:
            self.fleet.remove(name)
            self.gateway.forget(name)
            self.write_state()
        log.info("function %s removed", name)

    def scale(self, name: str, replicas: int) -> int:
        """POST /system/scale-function: the count is recorded (the autoscaler keeps at least that
        many), then applied on the gateway's loop, where leaving replicas drain first. Returns it."""
        with self.lock:
            replicas = self.fleet.scale(name, replicas)
        self.gateway_thread.run(self.scaler.set_replicas(name, replicas))
        return replicas

    def write_state(self) -> None:
        s3 = self.s3
        write_state(
            self.settings.state_dir,
            {
                "pid": os.getpid(),
                "ready": True,  # written once start() has seen every component ready
                "gateway": self.gateway_url,
                "triton": self.triton.state(),
                "functions": {name: {**entry, "idle_s": self.scaler.idle_s(name)} for name, entry in self.fleet.state().items()},
                "models": self.on_demand.state(),
                "s3": s3.endpoint if s3 else None,
                "s3_events": self.s3_notifier.status() if self.s3_notifier else None,
                "triggers": self.triggers.status(),
                "logs": str(self.fleet.logs),
                "settings": self.settings.to_json(),  # what this supervisor runs with
                # Every process of ours with its start time: `sai up` and `sai down` stop these (and
                # what they started) after a hard kill, and never a process that reused a pid.
                "processes": [
                    identity(os.getpid()),
                    self.triton.server.record if self.triton.server else None,
                    *self.fleet.records(),
                    identity(s3.pid) if s3 else None,
                    *self.triggers.records(),
                ],
            },
        )

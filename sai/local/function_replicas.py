"""A function's processes: `Replica` is one process serving the function's build context on its
own loopback port (the python3-http-debian contract, function_runner.py); `RunningFunction` is a
function's replicas, which the gateway calls in turn.

`wanted` may be 0 (no process: a call wakes it, sai/local/scaler.py); the fleet (fleet.py) owns
these objects and changes them under the platform's lock, while the gateway's event loop reads
`spec` and picks replicas without it (the `replicas` list is replaced, never changed in place). A
replica takes calls once it listens and until the autoscaler drains it; its `inflight` count and
`draining` flag belong to the gateway's loop alone.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

from sai.local.processes import Restarts, identity, listens_on, spawn, tail, terminate_group, wait_until
from sai.local.stack import Function
from sai.state import free_port, http_ok

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
        self.probe_failures = 0  # liveness probes failed in a row (the fleet's supervise counts them)
        self.listening = False  # seen listening since its start (ready() caches it)
        self.draining = False  # leaving: takes no new calls (the gateway's loop sets it)
        self.inflight = 0  # calls the gateway has sent it and not had back

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
        self.report_path.unlink(missing_ok=True)
        self.process = spawn(
            cmd,
            self.log_path,
            # HOSTNAME: as a pod's hostname is its name (template Context.hostname)
            env={**env, "HOSTNAME": self.name, "SAI_STARTUP_REPORT": str(self.report_path), "SAI_SPAWNED_AT": repr(time.time())},
        )
        self.record = identity(self.process.pid)
        self.started_at, self.probe_failures, self.listening = time.monotonic(), 0, False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def report_path(self) -> pathlib.Path:
        """Where its runner writes where its start went (function_runner.startup_report)."""
        return self.log_path.with_suffix(".startup.json")

    def startup_report(self) -> dict[str, float]:
        """{"process_s", "imports_s"} of its last start ({} before it wrote them)."""
        try:
            return json.loads(self.report_path.read_text())
        except (OSError, ValueError):
            return {}

    def ready(self) -> bool:
        """It runs and listens: calls sent now are served, not refused."""
        if not self.alive():
            return False
        if not self.listening:
            self.listening = self.process is not None and listens_on(self.process.pid, self.port)
        return self.listening

    def live(self) -> bool:
        """The liveness probe: GET /_/health, the path the watchdog answers in a pod (function_runner).
        A stopped or hung process does not answer in time; one still starting (not listening yet,
        within START_TIMEOUT_S of its start) counts as live."""
        if http_ok(f"http://127.0.0.1:{self.port}/_/health", timeout=PROBE_TIMEOUT_S):
            return True
        starting = time.monotonic() - self.started_at < START_TIMEOUT_S
        return starting and self.process is not None and not listens_on(self.process.pid, self.port)

    def wait_ready(self, timeout: float) -> None:
        def exited() -> str | None:
            return None if self.alive() else f"function {self.name} exited; see {self.log_path}:\n{tail(self.log_path)}"

        if not wait_until(self.ready, timeout, interval=0.02, fail=exited):
            raise TimeoutError(f"function {self.name} not listening after {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None:
            terminate_group(self.process, timeout=5)

    def kill(self) -> None:
        """SIGKILL its group at once: a stopped or hung process ignores SIGTERM."""
        if self.process is not None:
            terminate_group(self.process, 0)


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
        replicas: int,
    ):
        self.spec, self.context, self.env, self.log_path = spec, context, env, log_path
        self.restarts = restarts
        self.wanted = replicas  # the fleet's choice: the scale API's count or the policy's (fleet.py)
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

    def serving(self) -> list[Replica]:
        """The replicas that take calls: they listen and are not draining (none at zero, while
        waking, or dead and being restarted)."""
        return [r for r in self.replicas if not r.draining and r.ready()]

    def pick(self) -> Replica | None:
        """The next replica to call, in turn among those serving; None when none is."""
        serving = self.serving()
        if not serving:
            return None
        self._turn = (self._turn + 1) % len(serving)
        return serving[self._turn]

    def available(self) -> int:
        """Replicas that answer calls (/system/functions' availableReplicas)."""
        return sum(r.ready() for r in self.replicas)

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

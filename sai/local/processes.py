"""Process plumbing shared by the local runtime: stopping process groups and recorded process
trees, telling a process of ours from one that reuses its pid, tying children to the supervisor's
life, scratch folders that do not outlive us, restart back-off and restarting, reading log tails,
waiting for a condition with a deadline."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psutil

T = TypeVar("T")
log = logging.getLogger(__name__)


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    interval: float = 0.2,
    fail: Callable[[], str | None] | None = None,
) -> T | None:
    """Call `condition` until it returns something truthy (returned) or `timeout` seconds pass
    (None). `fail`, checked first on every round, returns a reason to give up early (then
    RuntimeError(reason) is raised), e.g. "the process exited"."""
    deadline = time.monotonic() + timeout
    while True:
        if fail is not None and (reason := fail()):
            raise RuntimeError(reason)
        if result := condition():
            return result
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def terminate_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the process group, SIGKILL it if it is still there after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # leader gone; make sure no child of the group outlives it
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return


def running_with(pid: int, marker: str) -> bool:
    """True when `pid` is a live (not zombie) process whose command line contains `marker`:
    a guard against signalling a recycled pid."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and marker in proc.cmdline()
    except psutil.Error:
        return False


def tail(path: pathlib.Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- children die with the supervisor -------------------------------------------------------------
_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: no dlopen in the child


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` that makes the kernel SIGKILL the child when the thread that started it dies
    (prctl PR_SET_PDEATHSIG). Chosen over a shared process group: after `kill -9` of the supervisor
    nobody is left to signal a group, while the kernel delivers this signal itself. Each child keeps
    its own session (start_new_session), so it can still be stopped as a group with whatever it
    forks. Start children from a thread that lives as long as the supervisor (the main one)."""
    parent = os.getpid()

    def preexec() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork() and prctl()
            os._exit(1)

    return preexec


def spawn(cmd: list[str], log_path: str | os.PathLike, stdin: Any = subprocess.DEVNULL, **popen: Any) -> subprocess.Popen:
    """Start a child of the supervisor: its output appended to `log_path`, no stdin unless given,
    a session of its own (stopped as a group with whatever it forks: terminate_group) and killed by
    the kernel should the supervisor die (die_with_parent). `popen`: more Popen arguments (env, cwd)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=stdin,
            start_new_session=True,
            preexec_fn=die_with_parent(),
            **popen,
        )


# A janitor waits for EOF on its stdin, then removes the folder (retrying while a dying child of
# ours, such as a Triton killed with us, may still be writing into it).
_JANITOR = """import os, shutil, sys, time
sys.stdin.buffer.read()
for _ in range(50):
    shutil.rmtree(sys.argv[1], ignore_errors=True)
    if not os.path.exists(sys.argv[1]):
        break
    time.sleep(0.1)
"""


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[pathlib.Path]:
    """A temporary folder, removed when the block ends, and also when this process dies without
    running its `finally` (kill -9): a janitor process in a session of its own holds the read end
    of a pipe whose write end only we hold, and the kernel closes that however we end."""
    path = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    read, write = os.pipe()  # not inherited by our other children (PEP 446), so only we hold `write`
    try:
        janitor = subprocess.Popen([sys.executable, "-I", "-c", _JANITOR, str(path)], stdin=read, start_new_session=True)
    finally:
        os.close(read)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(write)
        janitor.wait(10)


# -- identity of recorded processes ----------------------------------------------------------------
# Start times are compared with this slack: psutil derives them from the boot time, which the
# kernel reports to the second. A pid reused within a second of the original's start is not a risk.
_START_SLACK_S = 1.0


def identity(pid: int | None) -> dict | None:
    """{"pid", "started"} for the state file, so that a later reader can tell this process from
    another that happens to get the same pid (see `verified`)."""
    if not pid:
        return None
    try:
        return {"pid": pid, "started": psutil.Process(pid).create_time()}
    except psutil.Error:
        return None


def verified(record: dict | None) -> psutil.Process | None:
    """The live process that `record` (from `identity`) names, or None when it exited, is a
    zombie, or its pid now belongs to another process (its start time differs)."""
    try:
        if record is None:
            return None
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record["started"])) > _START_SLACK_S:
            return None
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except (psutil.Error, KeyError, TypeError, ValueError):
        return None


def recorded_tree(records: Iterable[dict | None]) -> list[psutil.Process]:
    """Every live process of the recorded ones, their descendants, and the members of the process
    groups they led, which outlive their leader (Triton's backend stubs, once Triton is killed).
    A group id stays allocated while the group has members, so when its leader's pid is free,
    the members found are that group's; when the pid is taken by another process, it is skipped."""
    found: dict[int, psutil.Process] = {}
    groups: list[tuple[int, float]] = []
    for record in filter(None, records):
        proc = verified(record)
        if proc is not None:
            found[proc.pid] = proc
            for child in _quiet(proc.children, recursive=True) or []:
                found[child.pid] = child
        if proc is not None or not psutil.pid_exists(int(record["pid"])):
            groups.append((int(record["pid"]), float(record["started"])))
    if groups:
        for proc in psutil.process_iter():
            pgid = _quiet(os.getpgid, proc.pid)
            started = _quiet(proc.create_time)
            if started and any(pgid == g and started >= s - _START_SLACK_S for g, s in groups):
                found[proc.pid] = proc
    found.pop(os.getpid(), None)
    return [p for p in found.values() if _quiet(p.status) not in (None, psutil.STATUS_ZOMBIE)]


def stop_processes(procs: list[psutil.Process], timeout: float = 10.0) -> list[psutil.Process]:
    """SIGTERM them all, SIGKILL whatever is left after `timeout`; returns those still alive."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for proc in procs:
            _quiet(proc.send_signal, sig)
        _, procs = psutil.wait_procs(procs, timeout=wait)
        procs = [p for p in procs if _quiet(p.status) not in (None, psutil.STATUS_ZOMBIE)]
        if not procs:
            break
    return procs


def listens_on(pid: int | None, port: int) -> bool:
    """True when process `pid` itself holds a listening TCP socket on `port`: readiness is about
    the process we started, not whoever answers on its port."""
    proc = _quiet(psutil.Process, pid) if pid else None  # psutil.Process(None) would be this process
    # net_connections is psutil >= 6's name for connections
    conns = _quiet(getattr(proc, "net_connections", None) or proc.connections, kind="tcp") if proc else None
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns or [])


def _quiet(call: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """`call(...)`, or None when the process vanished or may not be inspected."""
    try:
        return call(*args, **kwargs)
    except (psutil.Error, OSError):
        return None


# -- restarts ---------------------------------------------------------------------------------------
@dataclass
class Restarts:
    """When to restart a component that died: after 1, 2, 4 ... s (capped), and never again once it
    died `limit` times in a row (each time within `stable_s` of its start): then it is FAILED,
    which `sai status` shows with its last log lines, instead of a restart loop nobody sees."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    limit: int = 5
    stable_s: float = 60.0
    count: int = 0  # restarts so far
    in_a_row: int = 0  # deaths since the last stable run
    started_at: float = field(default_factory=time.monotonic)
    next_at: float | None = None  # set while a restart is pending
    failed: bool = False

    def died(self, now: float | None = None) -> bool:
        """Record a death, schedule its restart or give up; False when this death was already seen."""
        now = time.monotonic() if now is None else now
        if self.next_at is not None or self.failed:
            return False
        self.in_a_row = 1 if now - self.started_at >= self.stable_s else self.in_a_row + 1
        if self.in_a_row > self.limit:
            self.failed = True
        else:
            self.next_at = now + min(self.max_delay_s, self.first_delay_s * 2 ** (self.in_a_row - 1))
        return True

    def due(self, now: float | None = None) -> bool:
        return self.next_at is not None and not self.failed and (time.monotonic() if now is None else now) >= self.next_at

    def restarted(self, now: float | None = None) -> None:
        self.count += 1
        self.next_at = None
        self.started_at = time.monotonic() if now is None else now

    @property
    def state(self) -> str:
        return "FAILED" if self.failed else "restarting" if self.next_at is not None else "running"

    def health(self, log_path: pathlib.Path) -> dict:
        """The component's health as the state file records it (`sai status` shows it): with the
        last lines of its log once FAILED."""
        failed = {"last_log": tail(log_path, 15)} if self.failed else {}
        return {"state": self.state, "restarts": self.count, **failed}


def restart_when_due(
    name: str, process: subprocess.Popen | None, restarts: Restarts, log_path: pathlib.Path, restart: Callable[[], None]
) -> None:
    """Note the death of `name`; call `restart()` when its back-off has passed, never once FAILED.
    The supervisor calls this on every tick for each component that is not running."""
    if restarts.died():
        code = process and process.poll()
        if restarts.failed:
            log.error("%s died %d times in a row (exit %s); giving up: FAILED, see %s", name, restarts.in_a_row, code, log_path)
        else:
            log.error("%s died (exit %s); restarting in %.1f s", name, code, (restarts.next_at or 0) - time.monotonic())
    if restarts.due():
        restarts.restarted()
        try:
            restart()
        except Exception as exc:  # noqa: BLE001 - a failed start counts as a death on the next tick
            log.error("%s restart failed: %s", name, exc)

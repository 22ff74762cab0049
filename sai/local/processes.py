"""Process plumbing shared by the local runtime: stopping process groups, reading log tails,
waiting for a condition with a deadline."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

import psutil

T = TypeVar("T")


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

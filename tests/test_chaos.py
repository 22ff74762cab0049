"""Chaos: `kill -9` of Triton, of a function and of the supervisor, and a hung (SIGSTOPped) Triton,
done to the real `sai up` running in the background with its own state folder and free ports.
Each test asserts what clients get meanwhile (a prompt 503 + Retry-After, never a hang or a 500)
and that the platform recovers by itself, or, for the supervisor, that nothing of it remains.
The tests share one platform and run in file order; each leaves it recovered for the next."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from sai.local.processes import wait_until
from sai.state import free_port

pytestmark = pytest.mark.slow


def sai(*args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", "sai", *args], env=env, capture_output=True, text=True, timeout=timeout)


class Stack:
    """`sai -v up --only image-classify` (also proves -v passes on to the supervisor's argv)."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.env = {**os.environ, "SAI_STATE_DIR": str(state_dir)}
        self.port = free_port()
        self.args = ["--port", str(self.port), "--only", "image-classify"]
        for flag in ("--triton-http-port", "--triton-grpc-port", "--triton-metrics-port"):
            self.args += [flag, str(free_port())]
        self.url = f"http://127.0.0.1:{self.port}/function/image-classify"

    def up(self) -> subprocess.CompletedProcess:
        return sai("-v", "up", *self.args, env=self.env)

    def state(self) -> dict:
        return json.loads((self.state_dir / "run" / "state.json").read_text())

    def ours(self) -> list[psutil.Process]:
        """Every process whose command line names this state folder (Triton, its stubs, the function)
        or that is this platform's supervisor."""
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if proc.info["status"] != psutil.STATUS_ZOMBIE and (
                str(self.state_dir) in cmd or (" up --foreground" in cmd and self.args[1] in cmd)
            ):
                found.append(proc)
        return found

    def call(self, jpeg: bytes, timeout: float = 90) -> tuple[requests.Response, float]:
        start = time.monotonic()
        r = requests.post(self.url, data=jpeg, timeout=timeout)
        return r, time.monotonic() - start

    def serves(self, jpeg: bytes, within: float) -> bool:
        return bool(wait_until(lambda: self.call(jpeg)[0].status_code == 200, within, interval=0.5))


def unavailable(r: requests.Response) -> bool:
    """What a client may get while a component is down: a JSON 503 with Retry-After."""
    return r.status_code == 503 and int(r.headers["Retry-After"]) > 0 and bool(r.json()["error"]["code"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory, coffee_jpeg):
    stack = Stack(tmp_path_factory.mktemp("sai-chaos"))
    up = stack.up()
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert " DEBUG " in (stack.state_dir / "logs" / "platform.log").read_text()  # -v reached the supervisor
        assert stack.call(coffee_jpeg)[0].status_code == 200
        yield stack
    finally:
        down = sai("down", env=stack.env)
        assert down.returncode == 0, down.stderr
        assert wait_until(lambda: not stack.ours(), 15), stack.ours()


def test_kill_function(stack, coffee_jpeg):
    pid = stack.state()["functions"]["image-classify"]["pid"]
    os.kill(pid, signal.SIGKILL)
    r, took = stack.call(coffee_jpeg)
    assert unavailable(r) and took < 5, (r.status_code, r.text, took)
    assert stack.serves(coffee_jpeg, within=30)
    assert stack.state()["functions"]["image-classify"]["restarts"] == 1


def test_kill_triton(stack, coffee_jpeg):
    pid = stack.state()["triton"]["pid"]
    stubs = [p for p in psutil.Process(pid).children()]
    assert stubs  # Triton's backend stubs
    os.kill(pid, signal.SIGKILL)
    r, took = stack.call(coffee_jpeg)  # the function's retries may outlast the restart, or not
    assert (r.status_code == 200 or unavailable(r)) and took < 15, (r.status_code, r.text, took)
    assert stack.serves(coffee_jpeg, within=90)
    assert wait_until(lambda: stack.state()["triton"]["pid"] != pid, 5)  # the state is written after each restart
    assert stack.state()["triton"]["restarts"] == 1
    assert not [p for p in stubs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]  # no orphaned stubs


def test_hung_triton_is_restarted(stack, coffee_jpeg):
    """SIGSTOP: the process lives but never answers. The liveness probe must catch it, so a client
    waits seconds, not the 60 s upstream timeout, and later calls are served again."""
    pid = stack.state()["triton"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    r, took = stack.call(coffee_jpeg, timeout=55)
    assert r.status_code == 200 or unavailable(r), (r.status_code, r.text)
    assert took < 45, took
    assert stack.serves(coffee_jpeg, within=90)
    assert wait_until(lambda: stack.state()["triton"]["pid"] != pid, 5)  # the state is written after each restart
    assert "liveness probes failed in a row; killing it" in (stack.state_dir / "logs" / "platform.log").read_text()
    status = json.loads(sai("status", "--json", env=stack.env).stdout)
    assert status["ready"] and {c["name"]: c.get("restarts") for c in status["components"]}["triton"] == 2


def test_kill_supervisor_leaves_nothing_and_up_starts_clean(stack, coffee_jpeg):
    supervisor = stack.state()["pid"]
    children = [p for p in stack.ours() if p.pid != supervisor]
    assert children
    os.kill(supervisor, signal.SIGKILL)
    assert wait_until(lambda: not stack.ours(), 15), stack.ours()  # its children died with it
    with pytest.raises(requests.ConnectionError):  # refused at once: no hang
        requests.post(stack.url, data=coffee_jpeg, timeout=5)
    assert sai("status", env=stack.env).returncode == 3

    # What a dead supervisor recorded, plus a leftover it could not take along (a process group
    # whose leader died, as Triton's stubs are after Triton), and a recorded pid now reused.
    leftover = subprocess.Popen(["bash", "-c", "sleep 300 & wait"], start_new_session=True)
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        member = wait_until(lambda: psutil.Process(leftover.pid).children(), 5)[0]
        state = stack.state()
        state["processes"] += [
            {"pid": leftover.pid, "started": psutil.Process(leftover.pid).create_time()},
            {"pid": stranger.pid, "started": psutil.Process(stranger.pid).create_time() - 3600},
        ]
        (stack.state_dir / "run" / "state.json").write_text(json.dumps(state))
        leftover.kill()
        leftover.wait()
        assert member.is_running()

        up = stack.up()
        assert up.returncode == 0, up.stdout + up.stderr
        assert not member.is_running() or member.status() == psutil.STATUS_ZOMBIE
        assert stranger.poll() is None  # never signalled
        assert "left by a platform that died" in up.stderr
        assert stack.call(coffee_jpeg)[0].status_code == 200
    finally:
        stranger.kill()
        stranger.wait()

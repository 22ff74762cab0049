"""Chaos: `kill -9` of Triton, of a function and of the supervisor, a hung (SIGSTOPped) Triton and
function, and what a hostile local user or a bad model tries, done to the real `sai up` running in
the background with its own state folder, free ports and a copy of the project (SAI_REPO).
Each test asserts what clients get meanwhile (a prompt 503 + Retry-After, never a hang or a 500)
and that the platform recovers by itself, or, for the supervisor, that nothing of it remains.
The tests on `stack` share one platform and run in file order; each leaves it recovered for the
next. The last ones need no platform (a CLI killed, an unwritable log)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests
from helpers import project_copy, running_platform

from sai.local.platform import Platform, Settings
from sai.local.processes import wait_until
from sai.state import PlatformRunning, free_port, state_path

pytestmark = pytest.mark.slow


def sai(*args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", "sai", *args], env=env, capture_output=True, text=True, timeout=timeout)


class Stack:
    """`sai -v up --only image-classify` (also proves -v passes on to the supervisor's argv) on a
    copy of the project, so that a test may add a model to its repository."""

    def __init__(self, state_dir, project):
        self.state_dir, self.project = state_dir, project
        self.env = {**os.environ, "SAI_STATE_DIR": str(state_dir), "SAI_REPO": str(project)}
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
    stack = Stack(tmp_path_factory.mktemp("sai-chaos"), project_copy(tmp_path_factory.mktemp("chaos-project")))
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


def test_a_stopped_function_is_noticed_and_restarted(stack, coffee_jpeg):
    """SIGSTOP of a function: its liveness probe (GET /_/health, which of-watchdog answers in a
    pod) fails, the supervisor kills and restarts it and says so in its log and `sai status`; a
    caller waits seconds, not the 60 s upstream timeout."""
    before = stack.state()["functions"]["image-classify"]
    os.kill(before["pid"], signal.SIGSTOP)
    r, took = stack.call(coffee_jpeg, timeout=55)
    assert r.status_code == 200 or unavailable(r), (r.status_code, r.text)
    assert took < 30, took
    assert stack.serves(coffee_jpeg, within=60)
    assert wait_until(lambda: stack.state()["functions"]["image-classify"]["pid"] != before["pid"], 5)
    log = (stack.state_dir / "logs" / "platform.log").read_text()
    assert "function image-classify-0 hangs: 3 liveness probes failed in a row; killing it" in log
    status = json.loads(sai("status", "--json", env=stack.env).stdout)
    component = {c["name"]: c for c in status["components"]}["function/image-classify"]
    assert status["ready"] and component["restarts"] == before["restarts"] + 1, status


# Run as another user: everything a local user may see of the platform, and what it opens.
HOSTILE = r"""
import json, socket, sys
pid, port, grpc_socket, state_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
args = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")  # what `ps` shows everyone
headers = [""]  # no header, and each restricted-API header the command line names, with its value
for a in args:
    if a.startswith(("--http-restricted-api=", "--grpc-restricted-protocol=")):
        name, value = a.split("=", 1)[1].split(":", 1)[1].split("=", 1)
        headers.append(f"{name}: {value}\r\n")

def status(method, path, header):  # raw HTTP/1.1: no client library refusing a header name
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        body = b"{}" if method == "POST" else b""
        c.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{header}\r\n".encode() + body)
        return int(c.recv(64).split()[1])

def readable(path):
    try:
        open(path, "rb").read()
        return True
    except PermissionError:
        return False

unix = socket.socket(socket.AF_UNIX)
try:
    unix.connect(grpc_socket)
    grpc = "connected"
except OSError as exc:
    grpc = exc.errno
print(json.dumps({
    "headers": headers,
    "load": [status("POST", "/v2/repository/models/image_classifier/load", h) for h in headers],
    "logging": [status("GET", "/v2/logging", h) for h in headers],
    "trace": [status("GET", "/v2/trace/setting", h) for h in headers],
    "environ": readable(f"/proc/{pid}/environ"),
    "state": readable(state_file),
    "grpc": grpc,
}))
"""


def test_another_user_can_neither_read_a_key_nor_load_a_model(stack):
    """A local user (uid 65534 here) reads Triton's command line as `ps` does, tries every header
    it names against the model-repository, logging and trace APIs, and tries Triton's gRPC socket
    and the platform's files: all refused. Needs root (CI runs as root: there, not skipped)."""
    if os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"):
        message = "a probe as another uid needs root, setpriv (util-linux) and /usr/bin/python3"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    triton = stack.state()["triton"]
    grpc_socket = next((stack.state_dir / "triton").glob("grpc.sock:*"), stack.state_dir / "triton" / "grpc.sock")
    probe = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-I", "-c", HOSTILE]
    probe += [str(triton["pid"]), triton["url"].rpartition(":")[2], str(grpc_socket), str(stack.state_dir / "run" / "state.json")]
    run = subprocess.run(probe, capture_output=True, text=True, timeout=120, cwd="/")
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert set(seen["load"] + seen["logging"] + seen["trace"]) == {403}, seen
    assert len(seen["headers"]) == 2, seen  # the one restriction, whose header no HTTP client can send
    assert not seen["environ"] and not seen["state"] and seen["grpc"] == errno.EACCES, seen


def test_a_second_platform_on_this_state_folder_is_refused(stack, coffee_jpeg):
    """`sai up --foreground`, `sai up` and a Platform started in-process (the tests' helper) on the
    running platform's state folder, with other ports: each refuses, naming the running one,
    whose state stays and which keeps serving."""
    pid = stack.state()["pid"]
    ports = {flag: free_port() for flag in ("--port", "--triton-http-port", "--triton-grpc-port", "--triton-metrics-port")}
    other = [str(a) for pair in ports.items() for a in pair] + ["--only", "image-classify"]
    for argv in (["up", "--foreground", *other], ["up", *other]):
        started = time.monotonic()
        refused = sai(*argv, env=stack.env, timeout=60)
        assert refused.returncode == 1 and f"pid {pid}" in refused.stderr, (argv, refused.stderr)
        assert f"http://127.0.0.1:{stack.port}" in refused.stderr and time.monotonic() - started < 30
    second = Platform(
        Settings(
            state_dir=stack.state_dir,
            stack_file=stack.project / "stack.yml",
            model_repository=stack.project / "model_repository",
            only=["image-classify"],
            **{flag[2:].replace("-", "_"): port for flag, port in ports.items()},
        )
    )
    with pytest.raises(PlatformRunning, match=f"pid {pid}"):
        second.start()
    assert stack.state()["pid"] == pid and sai("status", env=stack.env).returncode == 0
    assert stack.call(coffee_jpeg)[0].status_code == 200


def test_a_model_too_big_to_check_fails_alone(stack, coffee_jpeg):
    """A model whose input dims are [3, 100000, 100000] loads into Triton; its check on zeros would
    need 112 GiB. `sai reload` reports it failed, promptly, and everything else keeps serving."""
    bad = stack.project / "model_repository" / "too_big"
    shutil.copytree(stack.project / "model_repository" / "image_classifier", bad)
    config = (bad / "configs" / "local.pbtxt").read_text().replace('"image_classifier"', '"too_big"')
    (bad / "configs" / "local.pbtxt").write_text(
        config.replace("TYPE_UINT8, dims: [ 224, 224, 3 ]", "TYPE_FP32, dims: [ 3, 100000, 100000 ]")
    )
    supervisor = stack.state()["pid"]
    try:
        started = time.monotonic()
        reload = sai("reload", "--timeout", "120", env=stack.env)
        assert reload.returncode == 1 and "model too_big: FAILED: " in reload.stdout, reload.stdout + reload.stderr
        assert "refused" in reload.stdout and time.monotonic() - started < 60
        assert stack.state()["pid"] == supervisor
        assert stack.call(coffee_jpeg)[0].status_code == 200
        ready = requests.get(f"http://{stack.state()['triton']['url']}/v2/models/too_big/ready", timeout=10)
        assert ready.status_code != 200  # not left half-working
    finally:
        shutil.rmtree(bad)


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


# Loads for a minute (unless its Triton goes away): a reload that is still running.
SLOW_LOAD = """
import os, time


class TritonPythonModel:
    def initialize(self, args):
        parent = os.getppid()
        for _ in range(600):
            if os.getppid() != parent:
                os._exit(0)
            time.sleep(0.1)

    def execute(self, requests):
        return []
"""


def test_kill_supervisor_during_reload_is_noticed(stack):
    """kill -9 of the supervisor while it loads a model for `sai reload`: the CLI says so within
    seconds (exit 3), instead of waiting for a report until its timeout. Leaves the platform down
    (the fixture's `sai down` finds nothing left)."""
    slow = stack.project / "model_repository" / "slow_load"
    (slow / "1").mkdir(parents=True)
    (slow / "1" / "model.py").write_text(SLOW_LOAD)
    (slow / "config.pbtxt").write_text(
        'name: "slow_load"\nbackend: "python"\ninput [ { name: "x", data_type: TYPE_FP32, dims: [ 1 ] } ]\n'
        'output [ { name: "y", data_type: TYPE_FP32, dims: [ 1 ] } ]\n'
    )
    supervisor = stack.state()["pid"]
    triton_log = stack.state_dir / "triton" / "triton.log"
    reload = subprocess.Popen(
        [sys.executable, "-m", "sai", "reload", "--timeout", "120"],
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: "slow_load" in triton_log.read_text(errors="replace"), 60)  # the load has begun
        os.kill(supervisor, signal.SIGKILL)
        killed = time.monotonic()
        _, err = reload.communicate(timeout=60)
        assert reload.returncode == 3 and "stopped during the reload" in err, err
        assert time.monotonic() - killed < 10
    finally:
        reload.kill()
        reload.wait()
        shutil.rmtree(slow)


def test_kill_9_of_models_add_leaves_no_scratch_folder(tmp_path):
    """`sai models add` stages the model in a temporary folder and loads it into a Triton of its
    own; kill -9 while Triton loads it: the folder goes all the same."""
    from sai.models.fp32_example import float_nchw_logits

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    onnx = float_nchw_logits(tmp_path / "model.onnx")
    argv = [sys.executable, "-m", "sai", "models", "add", "killed", "--onnx", str(onnx), "--repo", str(tmp_path / "repo")]
    add = subprocess.Popen(argv, env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: list(scratch.glob("sai-add-*/triton/triton.log")), 60)
        add.kill()
        add.wait()
        assert wait_until(lambda: not list(scratch.glob("sai-add-*")), 10), list(scratch.iterdir())
    finally:
        add.kill()
        add.wait()
    assert not (tmp_path / "repo" / "killed").exists()


def test_an_unwritable_platform_log_is_one_line(tmp_path):
    (tmp_path / "logs" / "platform.log").mkdir(parents=True)  # unwritable even for root
    up = sai("up", "--port", str(free_port()), env={**os.environ, "SAI_STATE_DIR": str(tmp_path)}, timeout=60)
    assert up.returncode == 1 and up.stderr.splitlines() == [
        f"sai: error: cannot write the platform's log {tmp_path}/logs/platform.log: Is a directory"
    ], up.stderr


def test_reload_restarts_a_failed_function(tmp_path, caplog):
    """A function whose log cannot be opened dies for good (FAILED) with a one-line error per
    attempt; `sai reload` tries it again (and says why it still fails), and restarts it once its
    log is fixed. No Triton needed: image-classify starts without one."""
    fast = {"restart_delay_s": 0.01, "restart_limit": 2}
    with running_platform(tmp_path, triton_url="127.0.0.1:9", only=["image-classify"], **fast) as platform:
        fn = platform.functions["image-classify"]
        fn.log_path.unlink()
        fn.log_path.mkdir()  # unwritable even for root
        os.kill(fn.process.pid, signal.SIGKILL)
        assert wait_until(lambda: platform.supervise_once() or fn.restarts.failed, 15, interval=0.05)
        failures = [r for r in caplog.records if "restart failed" in r.getMessage()]
        assert failures and all(r.exc_info is None and "\n" not in r.getMessage() for r in failures)
        assert json.loads(state_path(tmp_path).read_text())["functions"]["image-classify"]["state"] == "FAILED"

        failed = platform.reload()["functions"]["failed"]
        assert list(failed) == ["image-classify"] and "Is a directory" in failed["image-classify"], failed
        fn.log_path.rmdir()
        assert platform.reload()["functions"] == {"started": [], "restarted": ["image-classify"], "stopped": [], "failed": {}}
        assert platform.functions["image-classify"].alive()

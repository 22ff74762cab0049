"""`sai up` in the background, `sai status`, `sai logs`, `sai down`: as a user runs them, on free
ports, with a private state folder; nothing may outlive `sai down`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest
import requests

from sai.local.processes import wait_until
from sai.state import free_port

pytestmark = pytest.mark.slow


def sai(*args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", "sai", *args], env=env, capture_output=True, text=True, timeout=timeout)


def alive(pid: int) -> bool:
    """Running, and not a zombie (dead for our purposes)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_up_status_down_leaves_nothing_running(tmp_path, coffee_jpeg):
    env = {**os.environ, "SAI_STATE_DIR": str(tmp_path)}
    port = free_port()
    ports = [
        "--port",
        str(port),
        "--triton-http-port",
        str(free_port()),
        "--triton-grpc-port",
        str(free_port()),
        "--triton-metrics-port",
        str(free_port()),
        "--only",
        "image-classify",
    ]

    assert sai("status", env=env).returncode == 3  # not running yet

    # options that only the supervisor reads must reach it through the background start
    up = sai("up", *ports, "--auth-functions", "--allow-host", "sai.test", env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{port}" in up.stdout

        url = f"http://127.0.0.1:{port}/function/image-classify"
        assert requests.post(url, data=coffee_jpeg, timeout=30).status_code == 401  # --auth-functions
        auth = tuple((tmp_path / "secrets" / f"basic-auth-{part}").read_text().strip() for part in ("user", "password"))
        r = requests.post(url, data=coffee_jpeg, auth=auth, headers={"Host": f"sai.test:{port}"}, timeout=30)
        assert r.json()["predictions"][0]["label"] == "espresso"  # --allow-host
        r = requests.post(url, data=coffee_jpeg, auth=auth, headers={"Host": f"other.test:{port}"}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "host_not_allowed"

        status = sai("status", "--json", env=env)
        assert status.returncode == 0, status.stdout
        report = json.loads(status.stdout)
        assert report["ready"] and {c["name"] for c in report["components"]} == {"gateway", "triton", "function/image-classify"}

        again = sai("up", *ports, "--auth-functions", env=env)
        assert again.returncode == 0 and "already running" in again.stdout

        other = sai("up", "--port", str(free_port()), env=env)  # not what is served: say so, and fail
        assert other.returncode != 0 and f"gateway on http://127.0.0.1:{port}" in other.stderr

        reload = sai("reload", env=env)  # SIGHUP to the supervisor, its report back (tests/test_byo_model.py: the rest)
        assert (reload.returncode, reload.stdout) == (0, "nothing changed\n"), reload.stderr

        logs = sai("logs", "triton", env=env)
        assert logs.returncode == 0 and "Started HTTPService" in logs.stdout

        state = json.loads((tmp_path / "run" / "state.json").read_text())
        pids = [state["pid"], state["triton"]["pid"], *(f["pid"] for f in state["functions"].values())]
        assert all(alive(p) for p in pids)
    finally:
        down = sai("down", env=env)
    assert down.returncode == 0, down.stderr
    assert not any(alive(p) for p in pids)
    stubs = subprocess.run(["pgrep", "-f", f"{tmp_path}/triton/backends"], capture_output=True, text=True)
    assert stubs.stdout.strip() == ""  # no orphaned Triton Python backend stubs
    assert sai("status", env=env).returncode == 3


def test_up_reports_a_bad_function_name(tmp_path):
    env = {**os.environ, "SAI_STATE_DIR": str(tmp_path)}
    r = sai("up", "--foreground", "--port", str(free_port()), "--only", "no-such-function", env=env, timeout=60)
    assert r.returncode == 2 and "no-such-function" in r.stderr


def test_a_reused_pid_is_never_signalled(tmp_path):
    """platform.pid and state.json name a process that is not ours (its pid reused, so its start
    time differs, or an old pid file with no start time): `sai status` and `sai down` leave it be."""
    env = {**os.environ, "SAI_STATE_DIR": str(tmp_path)}
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        run = tmp_path / "run"
        run.mkdir()
        started = psutil.Process(stranger.pid).create_time() - 3600  # what ours would have had
        record = {"pid": stranger.pid, "started": started}
        (run / "state.json").write_text(
            json.dumps(
                {
                    "pid": stranger.pid,
                    "triton": {"pid": stranger.pid},
                    "functions": {"f": {"pid": stranger.pid}},
                    "processes": [record],
                }
            )
        )
        for pid_file in (json.dumps(record), str(stranger.pid)):
            (run / "platform.pid").write_text(pid_file)
            assert sai("status", env=env).returncode == 3
            down = sai("down", env=env, timeout=60)
            assert down.returncode == 0 and "not running" in down.stdout, down.stderr
            assert alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()


def test_down_stops_the_process_groups_a_dead_supervisor_recorded(tmp_path):
    """A recorded group whose leader died (as Triton's stubs outlive a killed Triton) is stopped
    by `sai down`, member by member."""
    env = {**os.environ, "SAI_STATE_DIR": str(tmp_path)}
    leader = subprocess.Popen(["bash", "-c", "sleep 300 & wait"], start_new_session=True)
    member = wait_until(lambda: psutil.Process(leader.pid).children(), 5)[0]
    try:
        (tmp_path / "run").mkdir()
        record = {"pid": leader.pid, "started": psutil.Process(leader.pid).create_time()}
        (tmp_path / "run" / "state.json").write_text(json.dumps({"processes": [record]}))
        leader.kill()
        leader.wait()
        down = sai("down", env=env, timeout=60)
        assert down.returncode == 0 and "stopped 1 leftover" in down.stdout, down.stdout + down.stderr
        assert wait_until(lambda: not alive(member.pid), 5)
    finally:
        if alive(member.pid):
            member.kill()

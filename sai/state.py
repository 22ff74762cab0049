"""The running platform as other processes see it: its state file, the supervisor's pid file,
and the ports it listens on. Written by the supervisor (sai.local.platform), read by `sai status`,
`sai down`, `sai s3` and the benchmarks."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pathlib
import secrets
import socket
import stat
import urllib.request

from sai.local.processes import identity, running_with, verified


def make_private(state_dir: pathlib.Path) -> None:
    """Logs, the SQLite store, pids and state are for this user only: the state folder is 0700 and
    everything this process (and its children, which inherit the umask) creates is 0600/0700."""
    os.umask(0o077)
    state_dir.mkdir(parents=True, exist_ok=True)
    if not state_dir.stat().st_mode & stat.S_ISVTX:  # never close a shared folder such as SAI_STATE_DIR=/tmp
        state_dir.chmod(0o700)


def state_path(state_dir: pathlib.Path) -> pathlib.Path:
    """The running platform's state file (pids, addresses, logs)."""
    return state_dir / "run" / "state.json"


def read_state(state_dir: pathlib.Path) -> dict:
    """The state of the platform running from `state_dir`; {} when none is (or it is unreadable)."""
    try:
        return json.loads(state_path(state_dir).read_text())
    except (OSError, ValueError):
        return {}


def write_state(state_dir: pathlib.Path, state: dict) -> None:
    """Replace the state file atomically (readers never see half a file)."""
    path = state_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def pid_path(state_dir: pathlib.Path) -> pathlib.Path:
    """The background supervisor's pid (`sai up` writes it, `sai down` signals it)."""
    run = state_dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    return run / "platform.pid"


def write_pid(state_dir: pathlib.Path, pid: int) -> None:
    """Record the supervisor with its start time, so that its pid, once reused, is not taken for it."""
    record = identity(pid)
    if record is not None:
        pid_path(state_dir).write_text(json.dumps(record))


def read_pid(state_dir: pathlib.Path) -> int | None:
    """The supervisor's pid when that very process is alive (same pid and start time), else None."""
    try:
        text = pid_path(state_dir).read_text().strip()
        record = json.loads(text)
    except (OSError, ValueError):
        return None
    if isinstance(record, int):  # written by an older sai: only a command line to go by
        return record if running_with(record, "--foreground") else None
    proc = verified(record)
    return proc.pid if proc is not None else None


# -- one platform per state folder ----------------------------------------------------------------
class PlatformRunning(RuntimeError):
    """Another platform runs from this state folder (the message names it)."""


def lock_path(state_dir: pathlib.Path) -> pathlib.Path:
    return state_dir / "run" / "platform.lock"


def take_lock(state_dir: pathlib.Path, record: dict) -> int:
    """Hold `<state>/run/platform.lock` for as long as the returned descriptor stays open (the
    supervisor's life; the kernel drops an flock when its holder dies, even by kill -9), and write
    `record` (pid, ports) into it for `lock_holder`. Two platforms sharing a state folder would
    share its pid and state files and its S3 event queue: the second one raises PlatformRunning.
    A lock, not a pid check: two starts at the same moment cannot both win."""
    path = lock_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PlatformRunning(running_elsewhere(state_dir, lock_holder(state_dir))) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({**identity(os.getpid()), **record}).encode(), 0)
    return fd


def lock_holder(state_dir: pathlib.Path) -> dict | None:
    """What the platform holding the lock wrote there; None when none runs (its process is gone)."""
    try:
        record = json.loads(lock_path(state_dir).read_text())
    except (OSError, ValueError):
        return None
    return record if verified(record) is not None else None


def running_elsewhere(state_dir: pathlib.Path, holder: dict | None) -> str:
    """The refusal to start a second platform on `state_dir`, naming the one that runs."""
    holder = holder or {}
    ports = ", ".join(f"{k} {v}" for k, v in (holder.get("ports") or {}).items())
    return (
        f"a platform already runs from {state_dir} (pid {holder.get('pid', '?')}"
        + (f"; {ports}" if ports else "")
        + "): stop it with `sai down` first, or give this one its own state folder (SAI_STATE_DIR)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 2) -> bool:
    """True when GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def credentials_dir(state_dir: pathlib.Path) -> pathlib.Path:
    """The gateway's basic-auth credentials, one file each as OpenFaaS mounts its secrets
    (basic-auth-user, basic-auth-password); the folder 0700, the files 0600."""
    return state_dir / "secrets"


def ensure_credentials(state_dir: pathlib.Path) -> tuple[str, str]:
    """The gateway's credentials, generated (user admin, a random password) when absent."""
    folder = credentials_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    if (found := read_credentials(state_dir)) is not None:
        return found
    for name, value in (("basic-auth-user", "admin"), ("basic-auth-password", secrets.token_urlsafe(24))):
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
    return read_credentials(state_dir)


def read_credentials(state_dir: pathlib.Path) -> tuple[str, str] | None:
    folder = credentials_dir(state_dir)
    try:
        return (folder / "basic-auth-user").read_text().strip(), (folder / "basic-auth-password").read_text().strip()
    except OSError:
        return None


def auth_header(state_dir: pathlib.Path) -> dict[str, str]:
    """The Authorization header for the gateway of the platform in `state_dir` ({} without one)."""
    found = read_credentials(state_dir)
    if found is None:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(":".join(found).encode()).decode()}

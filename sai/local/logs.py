"""The local platform's logs: where each component writes, its last lines, following one, and
every line of one call across components (`sai logs NAME | --follow NAME | --call ID`).

Components: "platform" (the supervisor and the gateway, which logs each call as `call <id>: ...`),
"triton", and one per function (`call <id>: ...` per call, common/errors.py). Triton receives
the call id as the inference request id (common/triton.py) and prints it only at --log-verbose 1
or more (`[request id: <id>]`); `sai up --triton-log-verbose 1` turns that on.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import re
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from sai.state import read_state


def log_files(state_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Component -> log file: the ones the running platform recorded in its state, else the files
    a stopped platform left in the state folder."""
    logs = state_dir / "logs"
    files = {"platform": logs / "platform.log", "triton": state_dir / "triton" / "triton.log", "nats": logs / "nats.log"}
    files.update({p.name[len("function-") : -len(".log")]: p for p in sorted(logs.glob("function-*.log"))})
    state = read_state(state_dir)
    if (state.get("triton") or {}).get("log"):
        files["triton"] = pathlib.Path(state["triton"]["log"])
    files.update({name: pathlib.Path(fn["log"]) for name, fn in (state.get("functions") or {}).items()})
    return files


def log_path(state_dir: pathlib.Path, component: str) -> pathlib.Path:
    """The log of `component`; KeyError naming the known ones when there is none."""
    files = log_files(state_dir)
    if component not in files or not files[component].exists():
        known = ", ".join(name for name, path in files.items() if path.exists()) or "none yet"
        raise KeyError(f"no log for {component!r} (logs: {known})")
    return files[component]


def last_lines(state_dir: pathlib.Path, component: str, lines: int = 50) -> list[str]:
    """The last `lines` lines of a component's log (a function's name, "platform" or "triton")."""
    with open(log_path(state_dir, component), "rb") as f:
        return _tail(f, lines)


def _tail(f: BinaryIO, lines: int) -> list[str]:
    """The last lines of an open binary file, read from its end (logs grow large)."""
    end = f.seek(0, 2)
    block, data = 64 * 1024, b""
    while end > 0 and data.count(b"\n") <= lines:
        start = max(0, end - block)
        f.seek(start)
        data = f.read(end - start) + data
        end = start
    return [line.decode(errors="replace") for line in data.splitlines()[-lines:]] if lines > 0 else []


def follow(path: pathlib.Path, poll_s: float = 0.25, stop: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """Lines appended to `path` from now on (`tail -f`); reopens the file when it is replaced
    or truncated. Ends when `stop()` says so."""
    f = open(path, "rb")
    f.seek(0, 2)
    partial = b""
    try:
        while not stop():
            chunk = f.read()
            if chunk:
                partial += chunk
                *complete, partial = partial.split(b"\n")
                yield from (line.decode(errors="replace") for line in complete)
                continue
            try:
                now = path.stat()
                moved = now.st_ino != os.fstat(f.fileno()).st_ino or now.st_size < f.tell()
            except OSError:
                moved = False  # between a rename and the new file: try again
            if moved:
                f.close()
                f, partial = open(path, "rb"), b""
            time.sleep(poll_s)
    finally:
        f.close()


def find_call(state_dir: pathlib.Path, call_id: str) -> dict[str, list[str]]:
    """Every log line that names `call_id`, per component (gateway/platform first, then the
    functions, then Triton); components without one are left out."""
    if len(call_id) < 8:
        raise ValueError("give at least 8 characters of the call id")
    found: dict[str, list[str]] = {}
    for component, path in log_files(state_dir).items():
        if not path.exists():
            continue
        with open(path, errors="replace") as f:
            hits = [line.rstrip("\n") for line in f if call_id in line]
        if hits:
            found[component] = hits
    order = ["platform", *sorted(k for k in found if k not in ("platform", "triton")), "triton"]
    return {k: found[k] for k in order if k in found}


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")  # function_runner's logging asctime


def read_log(path: pathlib.Path, last: dt.datetime, offset: int = 0) -> tuple[list[tuple[dt.datetime, str]], int, dt.datetime]:
    """The complete lines of `path` from byte `offset`: (timestamp, text) each, with the byte
    offset reached and the last timestamp seen. A line takes the time its logging prefix gives,
    else the one before it. (/system/logs reads the replicas' logs with it.)"""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset, last
    end = data.rfind(b"\n") + 1
    lines = []
    for raw in data[:end].decode(errors="replace").splitlines():
        if m := LOG_TIME.match(raw):
            stamp = dt.datetime.fromisoformat(f"{m[1]}.{m[2]}").astimezone(dt.UTC)
            last = stamp
        lines.append((last, raw))
    return lines, offset + end, last

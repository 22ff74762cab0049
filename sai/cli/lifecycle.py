"""`sai up | down | status | logs`: run the embedded platform in the background and manage it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.parse

import psutil

from sai import paths
from sai.cli.reload import write_reload_report
from sai.local import logs, s3_server
from sai.local.callbacks import CallbackPolicy
from sai.local.platform import Platform
from sai.local.platform_settings import SAI_PORT, Settings, settings_path
from sai.local.processes import listens_on, recorded_tree, stop_processes, tail, wait_until
from sai.local.scale_policy import parse_duration
from sai.local.triggers.runtime import trigger_lines
from sai.sai_error import SaiError
from sai.state import (
    PlatformRunning,
    credentials_dir,
    http_ok,
    lock_holder,
    make_private,
    pid_path,
    port_open,
    read_pid,
    read_state,
    running_elsewhere,
    state_path,
    write_pid,
)

log = logging.getLogger(__name__)

EXIT_NOT_RUNNING = 3  # like `systemctl status`: 3 = not running


def register(sub) -> None:
    # Each option's dest is a field of Settings, whose default it shows: defaults live there only
    # (sai/local/platform_settings.py), and `_settings` passes every such option on by name.
    d = Settings()
    up = sub.add_parser("up", help="start Triton, the functions and the gateway; return once ready")
    up.add_argument("--foreground", action="store_true", help="run in this terminal under supervision (Ctrl-C stops)")
    up.add_argument("--settings-file", type=pathlib.Path, help=argparse.SUPPRESS)  # how `sai up` starts its supervisor
    up.add_argument(
        "--host",
        default=d.host,
        help="address the gateway binds; Triton and functions stay on loopback (default: %(default)s)",
    )
    up.add_argument("--port", type=int, default=d.port, help=f"gateway port (default: $SAI_PORT or {SAI_PORT.default})")
    up.add_argument(
        "--allow-host",
        dest="allowed_hosts",
        action="append",
        default=d.allowed_hosts,  # $SAI_ALLOW_HOSTS's names; each option adds one
        metavar="NAME",
        help="a host name clients may reach the gateway by (repeatable; also $SAI_ALLOW_HOSTS, comma-separated); "
        "IP addresses, localhost and this machine's name always work, other Host headers get 400 (DNS rebinding)",
    )
    up.add_argument(
        "--triton-http-port", type=int, default=d.triton_http_port, help="Triton's HTTP port, on loopback (default: %(default)s)"
    )
    up.add_argument(
        "--triton-grpc-port",
        type=int,
        default=d.triton_grpc_port,
        help="names Triton's gRPC socket, <state>/triton/grpc.sock:PORT: the local Triton serves gRPC only there, "
        "to this user (default: %(default)s)",
    )
    up.add_argument(
        "--triton-metrics-port",
        type=int,
        default=d.triton_metrics_port,
        help="Triton's metrics port, on loopback (default: %(default)s)",
    )
    up.add_argument(
        "--triton-log-verbose",
        type=int,
        default=d.triton_log_verbose,
        help="Triton's --log-verbose; 1 logs each inference with its request id (the X-Call-Id) (default: %(default)s)",
    )
    up.add_argument("--triton-url", help="use this running Triton (host:port, HTTP) instead of starting one")
    up.add_argument("--with-s3", action="store_true", help="also start a local S3 server (moto) for object-classify")
    up.add_argument("--s3-port", type=int, default=d.s3_port, help="port of the local S3 server (default: %(default)s)")
    up.add_argument(
        "--only",
        action="append",
        metavar="FUNCTION",
        help="start only this function (repeatable) and load only the models it calls",
    )
    up.add_argument(
        "--callback-allow",
        action="append",
        default=d.callback_allow,  # $SAI_CALLBACK_ALLOW's entries; each option adds one
        metavar="CIDR|HOST:PORT",
        help="let async callbacks reach this private range or receiver (repeatable; also $SAI_CALLBACK_ALLOW, "
        "comma-separated); loopback ports other than the platform's own are always allowed",
    )
    up.add_argument(
        "--auth-functions",
        action="store_true",
        default=d.auth_functions,
        help="basic auth on /function/* and /async-function/* too, not only /system/* ($SAI_AUTH_FUNCTIONS=1)",
    )
    up.add_argument(
        "--nats-url",
        dest="triggers.nats_url",
        help="use this NATS server (with JetStream) for message topics instead of starting one",
    )
    up.add_argument(
        "--nats-port",
        dest="triggers.nats_port",
        type=int,
        default=d.triggers.nats_port,
        help="port of the NATS server started for topics (default: %(default)s)",
    )
    up.add_argument(
        "--zero-duration",
        dest="zero_duration_s",
        type=_zero_duration,
        default=d.zero_duration_s,
        metavar="DURATION|off",
        help="scale a function that sets no com.openfaas.scale.zero label to zero after this idle time, a Go "
        "duration such as 15m or 30s; off: never, OpenFaaS's default (default: 15m; docs/scaling.md)",
    )
    up.add_argument(
        "--models-memory",
        dest="models_memory_mb",
        type=float,
        metavar="MB",
        help="memory Triton's loaded models may take: least recently used ones no running function calls are "
        "unloaded first, and functions that may scale to zero start at zero (default: no limit)",
    )
    up.add_argument(
        "--wake-timeout",
        dest="wake_timeout_s",
        type=_positive_seconds,
        default=d.wake_timeout_s,
        metavar="SECONDS",
        help="a call held while its function wakes from zero gets 503 with Retry-After past this; the wake goes on "
        "for the next try (default: %(default)s)",
    )
    up.add_argument("--timeout", type=float, default=300, help="seconds to wait for readiness (default: %(default)s)")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop the platform started by `sai up`")
    down.set_defaults(func=cmd_down)

    status = sub.add_parser("status", help="show what runs and is ready (exit 0 ready, 1 degraded, 3 not running)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    logs = sub.add_parser(
        "logs", help="print a component's log (platform, triton or a function name), follow it, or find one call"
    )
    logs.add_argument("component", nargs="?", default="platform")
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing lines as they are written (Ctrl-C stops)")
    logs.add_argument("--call", metavar="ID", help="every line of the call with this X-Call-Id, in every component's log")
    logs.set_defaults(func=cmd_logs)


def _zero_duration(text: str) -> float | None:
    if text == "off":
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("it must be longer than 0s (or off)")
    return seconds


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError("it must be more than 0")
    return seconds


def _settings(args) -> Settings:
    """The `up` options as Settings: every option whose dest names a Settings field, by name
    (`part.field` for a field of a nested part, such as `triggers.nats_port`)."""
    names = {f.name for f in dataclasses.fields(Settings)}
    given: dict = {}
    for key, value in vars(args).items():
        top, _, field = key.partition(".")
        if top in names:
            if field:
                given.setdefault(top, {})[field] = value
            else:
                given[top] = value
    settings = Settings.from_json(given)
    try:
        CallbackPolicy(allow=settings.callback_allow)
    except ValueError as exc:
        raise SaiError(str(exc), exit_code=2) from None
    return settings


def cmd_up(args) -> int:
    state_dir = paths.state_dir()
    make_private(state_dir)
    if args.settings_file is not None:  # the supervisor `sai up` started: its settings, whole
        return _foreground(Settings.load(args.settings_file))
    settings = _settings(args)
    if args.foreground:
        return _foreground(settings)
    if (pid := read_pid(state_dir)) is not None:  # idempotent, like `docker compose up -d`
        served = _state().get("gateway") or "(still starting)"
        wanted = f"http://{settings.host}:{settings.port}"
        if served not in (wanted, "(still starting)"):
            raise SaiError(
                f"already running (pid {pid}) with the gateway on {served}, not {wanted}: `sai down` first to change it"
            )
        print(f"already running (pid {pid}), gateway {served}; `sai status` shows it, `sai down` stops it")
        return 0
    if (holder := lock_holder(state_dir)) is not None:  # e.g. a `sai up --foreground` still starting
        raise SaiError(running_elsewhere(state_dir, holder))
    _stop_leftovers(_state())
    if port_open(settings.host, settings.port):
        raise SaiError(f"port {settings.port} is already in use; choose another with --port")
    logfile = state_dir / "logs" / "platform.log"
    try:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        out = open(logfile, "ab")
    except OSError as exc:
        raise SaiError(f"cannot write the platform's log {logfile}: {exc.strerror}") from None
    settings_file = settings_path(state_dir)
    try:
        settings_file.parent.mkdir(parents=True, exist_ok=True)
        settings.save(settings_file)
    except OSError as exc:
        out.close()
        raise SaiError(f"cannot write the platform's settings {settings_file}: {exc.strerror}") from None
    # global options such as -v come before the command; the settings travel whole in the file
    argv = [sys.executable, "-m", "sai", *(["-v"] if args.verbose else []), "up", "--settings-file", str(settings_file)]
    with out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    write_pid(state_dir, proc.pid)
    print(f"starting the platform (pid {proc.pid}, log {logfile}) ...", flush=True)
    gateway = f"http://{settings.host}:{settings.port}/healthz"

    def failed() -> str | None:
        if proc.poll() is None:
            return None
        return f"the platform failed to start (exit {proc.returncode}); last log lines:\n{tail(logfile, 25)}"

    def ready() -> bool:  # ready as written by the supervisor we started, and its gateway answers
        state = _state()
        return state.get("pid") == proc.pid and state.get("ready") and http_ok(gateway)

    try:
        ok = wait_until(ready, args.timeout, 0.05, failed)
    except RuntimeError as exc:
        raise SaiError(str(exc)) from None
    if ok:
        print(
            f"ready: gateway http://{settings.host}:{settings.port}  (try: curl --data-binary @cat.jpg "
            f"http://{settings.host}:{settings.port}/function/image-classify)"
        )
        print("`sai status` shows each component, `sai logs NAME` its log, `sai down` stops everything")
        secrets = credentials_dir(paths.state_dir())
        print(f"/system/* needs basic auth: user and password in {secrets}/basic-auth-user and basic-auth-password")
        print(f"portal: http://{settings.host}:{settings.port}/ui/  (it asks for that user and password)")
        triton_metrics = (_state().get("triton") or {}).get("metrics")
        print(
            f"metrics: http://{settings.host}:{settings.port}/metrics (gateway, OpenFaaS names)"
            + (f", {triton_metrics} (Triton, nv_inference_*)" if triton_metrics else "")
            + "; `sai metrics` sums them up"
        )
        return 0
    os.killpg(proc.pid, signal.SIGTERM)
    raise SaiError(f"not ready after {args.timeout:.0f}s; see {logfile}")


def _foreground(settings: Settings) -> int:
    try:
        platform = Platform(settings)
    except ValueError as exc:
        raise SaiError(str(exc), exit_code=2) from exc
    stopping, reloads = [], []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGHUP, lambda *_: reloads.append(True))  # `sai reload` (sai/cli/reload.py)
    try:
        platform.start()  # records this process in platform.pid once ready
    except PlatformRunning as exc:
        raise SaiError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - reported, with the exit code, to `sai up`
        log.error("start failed: %s", exc)
        return 1
    print(f"platform ready: gateway {platform.gateway_url}, Triton {platform.triton_url}", flush=True)
    try:
        while not stopping:
            time.sleep(1)
            if reloads:
                reloads.clear()
                write_reload_report(settings.state_dir, platform.reload())
            platform.supervise_once()
    except KeyboardInterrupt:
        pass
    finally:
        platform.stop()
    return 0


def cmd_down(args) -> int:
    pid = read_pid(paths.state_dir())
    state = _state()
    if pid is None:
        stopped = _stop_leftovers(state)
        print(f"not running (stopped {stopped} leftover process(es))" if stopped else "not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not _alive(pid), 40):
        log.warning("supervisor %d did not stop in time; killing it", pid)
        os.kill(pid, signal.SIGKILL)
    _stop_leftovers(state)
    pid_path(paths.state_dir()).unlink(missing_ok=True)
    print("stopped")
    return 0


def _stop_leftovers(state: dict) -> int:
    """Stop what a supervisor that died hard left behind: every process recorded in its state, with
    their children and process groups, each checked to be that very process (pid and start time).
    Refuses, naming the pids and the command that clears them, when some cannot be stopped."""
    procs = recorded_tree(state.get("processes", []))
    if procs:
        log.warning(
            "stopping %d process(es) left by a platform that died: pids %s", len(procs), " ".join(str(p.pid) for p in procs)
        )
        if left := stop_processes(procs):
            pids = " ".join(str(p.pid) for p in left)
            raise SaiError(
                f"processes of an earlier platform still run and could not be stopped: pids {pids}; run `kill -9 {pids}`"
            )
    s3_server.stop_s3(s3_server.load_handle(paths.state_dir()), paths.state_dir())  # checks it is moto
    state_path(paths.state_dir()).unlink(missing_ok=True)
    return len(procs)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _state() -> dict:
    return read_state(paths.state_dir())


def cmd_status(args) -> int:
    state, pid = _state(), read_pid(paths.state_dir())
    if pid is None or not state:
        if args.json:
            print(json.dumps({"running": False}))
        else:
            print("not running (start it with `sai up`)")
        return EXIT_NOT_RUNNING
    rows = [_row("gateway", state["gateway"], {}, http_ok(state["gateway"] + "/healthz"))]
    triton = state["triton"]
    port = int(triton["url"].rpartition(":")[2])
    ours = triton.get("pid") is None or listens_on(triton["pid"], port)  # None: an external --triton-url
    rows.append(_row("triton", triton["url"], triton, ours and http_ok(f"http://{triton['url']}/v2/health/ready")))
    for name, fn in state["functions"].items():
        port = (fn["url"] or "").rpartition(":")[2]
        if fn.get("replicas") == 0:  # scaled to zero: nothing to listen, and a call wakes it
            rows.append({**_row(f"function/{name}", "-", fn, True), "status": "ZERO"})
            continue
        rows.append(_row(f"function/{name}", fn["url"] or "-", fn, bool(port) and listens_on(fn["pid"], int(port))))
    if state.get("s3"):
        rows.append(_row("s3 (moto)", state["s3"], {}, http_ok(state["s3"] + "/")))
    triggers = state.get("triggers") or {}
    if triggers.get("nats"):
        broker = urllib.parse.urlsplit(triggers["nats"])
        rows.append(_row("nats (topics)", triggers["nats"], {}, port_open(broker.hostname, broker.port or 4222)))
    ready = all(r["ready"] for r in rows)
    events = state.get("s3_events")  # bucket events waiting for object-classify (a 2xx)
    if args.json:
        doc = {"running": True, "ready": ready, "pid": pid, "components": rows, "s3_events": events, "triggers": triggers}
        print(json.dumps(doc, indent=2))
    else:
        print(f"platform supervisor pid {pid}; logs in {state['logs']}")
        for row in rows:
            notes = [f"{row['restarts']} restart(s)"] if row.get("restarts") else []
            if "replicas" in row:  # a function: ready/wanted, and how long it has been idle at zero
                notes.append(f"{row['available_replicas']}/{row['replicas']} replicas")
                if row.get("idle_s") is not None:
                    notes.append(f"idle {_duration(row['idle_s'])}, wakes on a call")
            if row.get("liveness_failures"):
                notes.append(f"{row['liveness_failures']} liveness probe(s) failed")
            print(f"  {row['status']:8} {row['name']:28} {row['address']}  {', '.join(notes)}".rstrip())
            if row.get("last_log"):
                print("           last log lines:\n" + "\n".join("             " + line for line in row["last_log"].splitlines()))
        if models := state.get("models"):
            print(f"  {_models_line(models)}")
        if events and events["queued"]:
            print(f"  {events['queued']} S3 event(s) queued for object-classify; last delivery: {events['last_error']}")
        for line in trigger_lines(triggers):
            print(f"  {line}")
    return 0 if ready else 1


def _row(name: str, address: str, recorded: dict, ready: bool) -> dict:
    """One component as `sai status` shows it: READY, DOWN, RESTARTING or FAILED (the supervisor
    gave up; with the last lines of its log)."""
    state = recorded.get("state", "running")
    status = "FAILED" if state == "FAILED" else "READY" if ready else "RESTARTING" if state == "restarting" else "DOWN"
    row = {"name": name, "address": address, "ready": ready and state != "FAILED", "status": status}
    row.update({k: recorded[k] for k in ("restarts", "liveness_failures", "last_log") if recorded.get(k)})
    if "replicas" in recorded:
        row.update({k: recorded.get(k) for k in ("replicas", "available_replicas", "idle_s")})
    return row


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s" if m else f"{s}s"


def _models_line(models: dict) -> str:
    """Triton's loaded models with their memory, and the budget (`sai up --models-memory`)."""
    loaded = ", ".join(f"{m} {mb:.0f} MB" for m, mb in models["loaded"].items()) or "none"
    budget = f" of a {models['budget_mb']:.0f} MB budget" if models.get("budget_mb") is not None else ""
    return f"models loaded: {loaded}; {models['memory_mb']:.0f} MB{budget}"


def cmd_logs(args) -> int:
    state_dir = paths.state_dir()
    if args.call:
        try:
            found = logs.find_call(state_dir, args.call.strip())
        except ValueError as exc:
            raise SaiError(str(exc), exit_code=2) from None
        if not found:
            raise SaiError(f"no log line names call {args.call!r}")
        for component, lines in found.items():
            print(f"== {component}")
            print("\n".join(lines))
        return 0
    try:
        path = logs.log_path(state_dir, args.component)
        print("\n".join(logs.last_lines(state_dir, args.component, args.lines)), flush=True)
    except KeyError as exc:
        raise SaiError(exc.args[0]) from None
    if args.follow:
        for line in logs.follow(path):
            print(line, flush=True)
    return 0

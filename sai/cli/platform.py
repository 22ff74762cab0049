"""`sai up | down | status | logs`: run the embedded platform in the background and manage it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

from common.settings import setting
from sai import paths
from sai.errors import SaiError
from sai.local import s3_server
from sai.local.callbacks import CallbackPolicy
from sai.local.platform import Platform, Settings
from sai.local.processes import tail, wait_until
from sai.state import credentials_dir, http_ok, pid_path, port_open, read_pid, read_state, state_path

log = logging.getLogger(__name__)

SAI_PORT = setting("SAI_PORT", int, 8080, low=1, high=65535)
SAI_CALLBACK_ALLOW = setting("SAI_CALLBACK_ALLOW", str, "")  # comma-separated CIDR or host:port
SAI_AUTH_FUNCTIONS = setting("SAI_AUTH_FUNCTIONS", int, 0, low=0, high=1)

EXIT_NOT_RUNNING = 3  # like `systemctl status`: 3 = not running


def register(sub) -> None:
    up = sub.add_parser("up", help="start Triton, the functions and the gateway; return once ready")
    up.add_argument("--foreground", action="store_true", help="run in this terminal under supervision (Ctrl-C stops)")
    up.add_argument("--host", default="127.0.0.1", help="address the gateway and Triton bind (default: %(default)s)")
    up.add_argument("--port", type=int, default=SAI_PORT(), help="gateway port (default: $SAI_PORT or 8080)")
    up.add_argument("--triton-http-port", type=int, default=8000)
    up.add_argument("--triton-grpc-port", type=int, default=8001)
    up.add_argument("--triton-metrics-port", type=int, default=8002)
    up.add_argument("--triton-url", help="use this running Triton (host:port, HTTP) instead of starting one")
    up.add_argument("--with-s3", action="store_true", help="also start a local S3 server (moto) for object-classify")
    up.add_argument("--s3-port", type=int, default=9000, help="port of the local S3 server (default: %(default)s)")
    up.add_argument("--only", action="append", metavar="FUNCTION", help="start only this function (repeatable)")
    up.add_argument(
        "--callback-allow",
        action="append",
        metavar="CIDR|HOST:PORT",
        help="let async callbacks reach this private range or receiver (repeatable; also $SAI_CALLBACK_ALLOW, "
        "comma-separated); loopback ports other than the platform's own are always allowed",
    )
    up.add_argument(
        "--auth-functions",
        action="store_true",
        default=bool(SAI_AUTH_FUNCTIONS()),
        help="basic auth on /function/* and /async-function/* too, not only /system/* ($SAI_AUTH_FUNCTIONS=1)",
    )
    up.add_argument("--timeout", type=float, default=300, help="seconds to wait for readiness (default: %(default)s)")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop the platform started by `sai up`")
    down.set_defaults(func=cmd_down)

    status = sub.add_parser("status", help="show what runs and is ready (exit 0 ready, 1 degraded, 3 not running)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    logs = sub.add_parser("logs", help="print a component's log (platform, triton or a function name)")
    logs.add_argument("component", nargs="?", default="platform")
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.set_defaults(func=cmd_logs)


def _settings(args) -> Settings:
    allow = [a for a in SAI_CALLBACK_ALLOW().split(",") if a.strip()] + (args.callback_allow or [])
    try:
        CallbackPolicy(allow=allow)
    except ValueError as exc:
        raise SaiError(str(exc), exit_code=2) from None
    return Settings(
        host=args.host,
        port=args.port,
        triton_http_port=args.triton_http_port,
        triton_grpc_port=args.triton_grpc_port,
        triton_metrics_port=args.triton_metrics_port,
        triton_url=args.triton_url,
        only=args.only,
        with_s3=args.with_s3,
        s3_port=args.s3_port,
        callback_allow=allow,
        auth_functions=args.auth_functions,
    )


def cmd_up(args) -> int:
    if args.foreground:
        return _foreground(_settings(args))
    if (pid := read_pid(paths.state_dir())) is not None:  # idempotent, like `docker compose up -d`
        print(f"already running (pid {pid}); `sai status` shows it, `sai down` stops it (to restart with other options)")
        return 0
    if port_open(args.host, args.port):
        raise SaiError(f"port {args.port} is already in use; choose another with --port")
    logfile = paths.state_dir() / "logs" / "platform.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "sai", "up", "--foreground"] + [a for a in sys.argv[2:] if a != "--foreground"]
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    pid_path(paths.state_dir()).write_text(str(proc.pid))
    print(f"starting the platform (pid {proc.pid}, log {logfile}) ...", flush=True)
    gateway = f"http://{args.host}:{args.port}/healthz"

    def failed() -> str | None:
        if proc.poll() is None:
            return None
        return f"the platform failed to start (exit {proc.returncode}); last log lines:\n{tail(logfile, 25)}"

    try:
        ready = wait_until(lambda: state_path(paths.state_dir()).exists() and http_ok(gateway), args.timeout, 0.5, failed)
    except RuntimeError as exc:
        raise SaiError(str(exc)) from None
    if ready:
        print(
            f"ready: gateway http://{args.host}:{args.port}  (try: curl --data-binary @cat.jpg "
            f"http://{args.host}:{args.port}/function/image-classify)"
        )
        print("`sai status` shows each component, `sai logs NAME` its log, `sai down` stops everything")
        secrets = credentials_dir(paths.state_dir())
        print(f"/system/* needs basic auth: user and password in {secrets}/basic-auth-user and basic-auth-password")
        return 0
    os.killpg(proc.pid, signal.SIGTERM)
    raise SaiError(f"not ready after {args.timeout:.0f}s; see {logfile}")


def _foreground(settings: Settings) -> int:
    try:
        platform = Platform(settings)
    except ValueError as exc:
        raise SaiError(str(exc), exit_code=2) from exc
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        platform.start()
    except Exception as exc:  # noqa: BLE001 - reported, with the exit code, to `sai up`
        log.error("start failed: %s", exc)
        return 1
    pid_path(paths.state_dir()).write_text(str(os.getpid()))
    print(f"platform ready: gateway {platform.gateway_url}, Triton {platform.triton_url}", flush=True)
    try:
        while not stopping:
            time.sleep(1)
            platform.supervise_once()
    except KeyboardInterrupt:
        pass
    finally:
        platform.stop()
        pid_path(paths.state_dir()).unlink(missing_ok=True)
    return 0


def cmd_down(args) -> int:
    pid = read_pid(paths.state_dir())
    state = _state()
    if pid is None:
        _kill_leftovers(state)
        print("not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not _alive(pid), 40):
        log.warning("supervisor %d did not stop in time; killing it", pid)
        os.killpg(pid, signal.SIGKILL)
    _kill_leftovers(state)
    pid_path(paths.state_dir()).unlink(missing_ok=True)
    print("stopped")
    return 0


def _kill_leftovers(state: dict) -> None:
    """Should the supervisor have died hard, stop the process groups it recorded."""
    pids = [state.get("triton", {}).get("pid")] + [f.get("pid") for f in state.get("functions", {}).values()]
    for pid in filter(None, pids):
        try:
            os.killpg(pid, signal.SIGKILL)
            log.info("stopped leftover process group %d", pid)
        except OSError:
            pass
    s3_server.stop_s3(s3_server.load_handle(paths.state_dir()), paths.state_dir())
    state_path(paths.state_dir()).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
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
    rows = [("gateway", state["gateway"], http_ok(state["gateway"] + "/healthz"))]
    triton = state["triton"]
    rows.append(("triton", triton["url"], http_ok(f"http://{triton['url']}/v2/health/ready")))
    for name, fn in state["functions"].items():
        host, _, port = (fn["url"] or "").removeprefix("http://").partition(":")
        ok = bool(port) and port_open(host, int(port))
        rows.append((f"function/{name}", fn["url"] or "-", ok))
    if state.get("s3"):
        rows.append(("s3 (moto)", state["s3"], http_ok(state["s3"] + "/")))
    ready = all(ok for _, _, ok in rows)
    events = state.get("s3_events")  # bucket events waiting for object-classify (a 2xx)
    if args.json:
        print(
            json.dumps(
                {
                    "running": True,
                    "ready": ready,
                    "pid": pid,
                    "components": [{"name": n, "address": a, "ready": ok} for n, a, ok in rows],
                    "s3_events": events,
                },
                indent=2,
            )
        )
    else:
        print(f"platform supervisor pid {pid}; logs in {state['logs']}")
        for name, address, ok in rows:
            print(f"  {'READY' if ok else 'DOWN ':5}  {name:28} {address}")
        if events and events["queued"]:
            print(f"  {events['queued']} S3 event(s) queued for object-classify; last delivery: {events['last_error']}")
    return 0 if ready else 1


def cmd_logs(args) -> int:
    logs = paths.state_dir() / "logs"
    name = {"platform": "platform.log", "triton": "../triton/triton.log"}.get(args.component, f"function-{args.component}.log")
    path = (logs / name).resolve()
    if not path.exists():
        raise SaiError(f"no log for {args.component!r} at {path}")
    print(tail(path, args.lines))
    return 0

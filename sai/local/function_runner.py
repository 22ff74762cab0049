"""Serve one function exactly as the `python3-http-debian` template's index.py does.

TEMPLATE pins the version followed: openfaas/python-flask-template, template/python3-http-debian/
index.py at commit e420a6f (2024-01-11, released in 0.4.0; unchanged up to e01a882, 2026-02-05).
tests/unit/test_function_runner.py checks this module's response rules against it.

Its semantics, reproduced function by function below (names as in index.py):
- each request builds an `Event` (body bytes, headers, method, query, path) and a `Context`
  (hostname from $HOSTNAME, default "localhost") and calls `function.handler.handle(event, context)`;
- `None` -> an empty 200; a dict -> (body, statusCode (default 200), headers); any other value is
  returned to Flask unchanged (a str, bytes, a (body, status) tuple, a list becomes JSON...);
- body: raw only when headers["Content-type"] (exact key) is application/octet-stream, else ""
  when absent, jsonify(body) for a dict, str(body) otherwise;
- headers: a dict becomes a list of pairs, anything else is passed through;
- an exception in the handler is Flask's HTML 500; the process keeps serving.
GET /_/health is answered here, as of-watchdog answers it in front of index.py (create_app).
It is served by waitress, one process per function. Our handlers' own error handling is in
common/errors.py (handler_errors); this module must not add any.

Run: python -m sai.local.function_runner --context .sai/build/<name> --port 5001
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import logging
import os
import sys
import threading
import time
from types import ModuleType
from typing import Any, TextIO

import psutil
from flask import Flask, jsonify, request
from waitress import serve

GATEWAY_POOL = 256  # sai.local.gateway's upstream connection pool
TEMPLATE = "openfaas/python-flask-template@e420a6fbdc800bc95cba982b511677ce2345b057:template/python3-http-debian/index.py"


class Event:
    def __init__(self) -> None:
        self.body = request.get_data()
        self.headers = request.headers
        self.method = request.method
        self.query = request.args
        self.path = request.path


class Context:
    def __init__(self) -> None:
        self.hostname = os.getenv("HOSTNAME", "localhost")


def format_status_code(res: dict) -> Any:
    if "statusCode" in res:
        return res["statusCode"]
    return 200


def format_body(res: dict, content_type: str) -> Any:
    if content_type == "application/octet-stream":
        return res["body"]
    if "body" not in res:
        return ""
    elif type(res["body"]) is dict:  # the template's exact test: dict subclasses become str
        return jsonify(res["body"])
    else:
        return str(res["body"])


def format_headers(res: dict) -> Any:
    if "headers" not in res:
        return []
    elif type(res["headers"]) is dict:
        return [(key, res["headers"][key]) for key in res["headers"].keys()]
    return res["headers"]


def get_content_type(res: dict) -> str:
    content_type = ""
    if "headers" in res:
        content_type = res["headers"].get("Content-type", "")
    return content_type


def format_response(res: Any) -> Any:
    if res is None:
        return ("", 200)
    if type(res) is dict:
        status_code = format_status_code(res)
        content_type = get_content_type(res)
        body = format_body(res, content_type)
        headers = format_headers(res)
        return (body, status_code, headers)
    return res


class StampedLines(io.TextIOBase):
    """stdout with each line prefixed by its time and `stdout:`, as of-watchdog's prefix_logs
    (default on) writes a function's output, in the asctime form the logging lines on stderr have:
    /system/logs orders the replicas' lines by it (sai/local/system_api.py)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.line_start, self.lock = stream, True, threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:  # waitress threads print at once
            out = []
            for part in text.splitlines(keepends=True):
                if self.line_start:
                    now = time.time()
                    out.append(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d} stdout: ")
                out.append(part)
                self.line_start = part.endswith("\n")
            self.stream.write("".join(out))
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def create_app(handler: ModuleType) -> Flask:
    app = Flask(__name__)

    # In a pod, of-watchdog answers GET /_/health itself ("OK"; openfaas/of-watchdog 0.9.9 main.go
    # makeHealthHandler) and faas-netes points the liveness probe there (0.18.17 pkg/k8s/probes.go).
    # Here this process is the watchdog too, so it answers the path, and the supervisor probes it
    # (sai/local/fleet.py): a stopped or hung process does not answer. The handler never sees it.
    @app.route("/_/health", methods=["GET"])
    def health() -> str:
        return "OK"

    @app.route("/", defaults={"path": ""}, methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
    def call_handler(path: str) -> Any:
        event = Event()
        context = Context()
        response_data = handler.handle(event, context)
        return format_response(response_data)

    return app


def startup_report(runner_ready: float, imported: float) -> None:
    """Where this process's start went, for cold-start figures (sai/local/scaler.py): the seconds
    from its spawn until this runner could import the handler (the interpreter and the template's
    own imports), and the handler's imports (numpy, Pillow, tritonclient...). Logged, and written as
    JSON to SAI_STARTUP_REPORT when that names a file. The spawn's time is SAI_SPAWNED_AT (set by
    whoever started it), else the kernel's start time (psutil; to the second, as boot time is)."""
    created = float(os.environ.get("SAI_SPAWNED_AT") or psutil.Process().create_time())
    report = {"process_s": round(runner_ready - created, 3), "imports_s": round(imported - runner_ready, 3)}
    logging.getLogger("function").info("started: process %.3f s, handler imports %.3f s", *report.values())
    if path := os.environ.get("SAI_STARTUP_REPORT"):
        with open(path, "w") as f:
            json.dump(report, f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a function build context (python3-http-debian contract).")
    parser.add_argument("--context", required=True, help="folder holding function/ (see sai.local.stack.build_context)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=4, help="waitress worker threads (template default: 4)")
    # waitress's default connection_limit (100) is below the gateway's connection pool (256):
    # connections past it waited in the listen backlog until the gateway's 60 s timeout. Aligned
    # with the pool, every connection is accepted; the gateway's max_inflight bounds the work.
    parser.add_argument("--connection-limit", type=int, default=GATEWAY_POOL, help="waitress connection_limit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.stdout = StampedLines(sys.stdout)
    sys.path.insert(0, os.path.abspath(args.context))
    runner_ready = time.time()
    handler = importlib.import_module("function.handler")
    startup_report(runner_ready, time.time())
    serve(
        create_app(handler),
        host=args.host,
        port=args.port,
        threads=args.threads,
        connection_limit=args.connection_limit,
        ident="function",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Serve one function the way the `python3-http-debian` template's server does.

The template imports `function.handler`, builds an `Event` (body bytes, headers, method, query,
path) and a `Context` for each request, calls `handle(event, context)` and turns the returned dict
into the HTTP response: `statusCode`, `headers`, and `body` (a dict becomes JSON; bytes pass through
only with the header key `Content-type: application/octet-stream`; anything else becomes str).
It is served by Flask on waitress, one process per function. This module reproduces that contract
so handlers behave here exactly as in the container.

Run: python -m sai.function_runner --context .sai/build/<name> --port 5001
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from flask import Flask, jsonify, request
from waitress import serve


class Event:
    def __init__(self):
        self.body = request.get_data()
        self.headers = request.headers
        self.method = request.method
        self.query = request.args
        self.path = request.path


class Context:
    def __init__(self):
        self.hostname = os.getenv("HOSTNAME", "localhost")


def _response(res):
    if res is None:
        return "", 200
    headers = res.get("headers") or {}
    raw = headers.get("Content-type", "") == "application/octet-stream" if isinstance(headers, dict) else False
    if raw:
        body = res["body"]
    elif "body" not in res:
        body = ""
    elif isinstance(res["body"], dict):
        body = jsonify(res["body"])
    else:
        body = str(res["body"])
    header_list = list(headers.items()) if isinstance(headers, dict) else headers
    return body, res.get("statusCode", 200), header_list


def create_app(handler) -> Flask:
    app = Flask(__name__)

    @app.route("/", defaults={"path": ""}, methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "PUT", "POST", "PATCH", "DELETE"])
    def call_handler(path):
        return _response(handler.handle(Event(), Context()))

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a function build context (python3-http-debian contract).")
    parser.add_argument("--context", required=True, help="folder holding function/ (see sai.functions.build_context)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=4, help="waitress worker threads (template default: 4)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, os.path.abspath(args.context))
    handler = importlib.import_module("function.handler")
    serve(create_app(handler), host=args.host, port=args.port, threads=args.threads, ident="function")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Helpers shared by the test modules (fixtures are in conftest.py): a platform on free ports,
image encoding, the template's event, a callback receiver, a function packaged as faas-cli builds it."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
import sys
import textwrap
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sai.local.platform import Platform, Settings
from sai.local.processes import wait_until
from sai.local.triggers.runtime import TriggerSettings
from sai.state import free_port

ROOT = Path(__file__).resolve().parents[1]
# A values file naming a models bucket, as every user's must for the S3 profiles (the chart has none).
MODELS_BUCKET = ROOT / "tests/data/values-models-bucket.yaml"


def unavailable(message: str):
    """A tool a test needs is missing: skip, except under CI=true (.ci/run installs it), fail."""
    import pytest

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def running_platform(state_dir, **settings):
    """A platform on free ports, stopped on exit: every model on a real tritonserver, the
    functions of stack.yml (or `only`), the gateway."""
    ports = {k: free_port() for k in ("port", "triton_http_port", "triton_grpc_port", "triton_metrics_port")}
    settings.setdefault("triggers", TriggerSettings(nats_port=free_port()))
    # Functions stay up unless a test asks otherwise: a session outlasts the 15 min default, and a
    # test that reads a function's process should not find it scaled to zero (test_scaling.py does that).
    settings.setdefault("zero_duration_s", None)
    running = Platform(Settings(state_dir=state_dir, **{**ports, **settings}))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def project_copy(root: Path, functions=("image-classify",), models=("image_classifier",)) -> Path:
    """A project (SAI_REPO) in `root` with stack.yml, common/ and only these functions and built
    models, which a test may change (add a model, break a function) without touching the checkout."""
    shutil.copy2(ROOT / "stack.yml", root / "stack.yml")
    shutil.copytree(ROOT / "common", root / "common", ignore=shutil.ignore_patterns("__pycache__"))
    for name in functions:
        shutil.copytree(ROOT / "functions" / name, root / "functions" / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in models:
        shutil.copytree(ROOT / "model_repository" / name, root / "model_repository" / name)
    return root


def encode(array_or_image, fmt: str = "JPEG", **save) -> bytes:
    """An image (PIL or numpy array) as file bytes."""
    from PIL import Image

    img = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


class Event:
    """The python3-http template's event: body bytes, headers, method, query, path. A dict or
    list body is sent as JSON."""

    def __init__(self, body=b"", content_type: str = "application/json", method: str = "POST", query=None, headers=None):
        if isinstance(body, dict | list):
            body = json.dumps(body)
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = {"Content-Type": content_type} if content_type else {}
        self.headers.update(headers or {})
        self.method, self.query, self.path = method, query or {}, "/"


def packaged_function(name: str, target: Path):
    """functions/<name> packaged like faas-cli builds it (handler folder as a package, ./common
    copied in) under a unique package name in `target`; returns its imported handler module.
    The caller removes `target` from sys.path when done."""
    pkg = target / (name.replace("-", "_") + "_fn")
    shutil.copytree(ROOT / "functions" / name, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "common", pkg / "common", ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "__init__.py").touch()
    sys.path.insert(0, str(target))
    return importlib.import_module(f"{pkg.name}.handler")


def call_handler(fn, payload, method="POST"):
    """handle() called in-process as the template calls it -> (status, body, headers)."""
    resp = fn.handle(Event(payload, method=method), types.SimpleNamespace())
    return resp["statusCode"], resp["body"], resp.get("headers", {})


class Receiver:
    """A callback receiver: records every POST; fails the first `fail_next` with 503."""

    def __init__(self):
        self.calls: list[dict] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    fail = outer.fail_next > 0
                    outer.fail_next -= 1 if fail else 0
                    outer.calls.append({"headers": dict(self.headers), "body": body, "path": self.path, "failed": fail})
                self.send_response(503 if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> dict[str, list[dict]]:
        """Successful deliveries by X-Call-Id."""
        out: dict[str, list[dict]] = {}
        with self.lock:
            for c in self.calls:
                if not c["failed"]:
                    out.setdefault(c["headers"]["X-Call-Id"], []).append(c)
        return out

    def wait_for(self, ids, timeout=20.0) -> dict[str, list[dict]]:
        def all_there():
            got = self.delivered()
            return got if all(i in got for i in ids) else None

        got = wait_until(all_there, timeout, interval=0.05)
        if got is None:
            raise AssertionError(f"not delivered: {set(ids) - set(self.delivered())}")
        return got


# -- a checkout with small functions, for the gateway's /system/* API (test_system_api.py, test_openfaas_contract.py)
ECHO = textwrap.dedent("""
    import os
    import sys

    def handle(event, context):
        query = event.query
        if query.get("secret"):  # read as OpenFaaS mounts secrets: /var/openfaas/secrets/<name>
            with open(os.path.join(os.environ.get("SECRETS_DIR", "/var/openfaas/secrets"), query["secret"])) as f:
                return {"statusCode": 200, "body": f.read()}
        if query.get("inside"):  # what the function got: headers, where it imports from, what ran at its start
            return {"statusCode": 200, "body": {"headers": dict(event.headers), "sys_path": sys.path,
                                                "sitecustomize": getattr(sys.modules.get("sitecustomize"), "__file__", None)}}
        print(f"served by {context.hostname} mark={query.get('mark', '')}", flush=True)
        return {"statusCode": 200, "body": {"hostname": context.hostname, "greeting": os.environ.get("GREETING", ""),
                                            "pid": os.getpid(), "code": "echo"}}
""")
OTHER = 'def handle(event, context):\n    return {"statusCode": 200, "body": {"code": "other"}}\n'
STACK = textwrap.dedent("""
    version: 1.0
    provider: {name: openfaas, gateway: http://127.0.0.1:8080}
    functions:
      echo:
        lang: python3-http-debian
        handler: ./functions/echo
        image: ${REGISTRY:-localhost:5001}/echo:0.1.0
        labels: {com.openfaas.scale.min: "1", com.openfaas.scale.max: "3"}
      pair:
        lang: python3-http-debian
        handler: ./functions/echo
        image: ${REGISTRY:-localhost:5001}/echo:0.1.0
        labels: {com.openfaas.scale.min: "2"}
""")


def function_project(root):
    """A checkout of its own: functions/echo (stack.yml's echo, and pair at two replicas) and
    functions/other (a folder stack.yml does not name); returns its stack.yml."""
    for name, code in (("echo", ECHO), ("other", OTHER)):
        (root / "functions" / name).mkdir(parents=True)
        (root / "functions" / name / "handler.py").write_text(code)
    (root / "stack.yml").write_text(STACK)
    return root / "stack.yml"


def start_platform(stack_file, state_dir, **settings) -> Platform:
    """A platform without Triton (these functions need none) on a free port; the caller stops it."""
    settings = Settings(port=free_port(), triton_url="127.0.0.1:9", stack_file=stack_file, state_dir=state_dir, **settings)
    platform = Platform(settings)
    platform.start()
    return platform

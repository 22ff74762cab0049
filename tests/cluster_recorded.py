"""Recorded API objects (tests/cluster_objects/) served two ways, for the offline `sai cluster` tests:

- `Recorded`: the methods of sai.cluster.reads.ClusterReads answered from the objects in memory,
  for the status / cold-start / prerequisite logic;
- `RecordedAPIServer`: the same objects over HTTP at the Kubernetes REST paths (GET only, list and
  get, label and field selectors of the forms sai uses), so ClusterReads itself, with the real
  kubernetes client and KServeClient behind it, can be pointed at it through a kubeconfig.
There is no kube-apiserver on the build machines; this serves recorded objects, it does not
emulate a control plane (no watch, no writes).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

OBJECTS = Path(__file__).parent / "cluster_objects"
# triton-pod.yaml: the recorded pod that woke from zero, and what a cold start through it shows
WOKEN_POD = "serverless-ai-triton-predictor-00001-deployment-7c9d8b6f5d-x2k4q"
WOKEN_POD_PHASES = ["pod created", "scheduled", "models fetched", "image pulled", "container started", "model ready"]

PLURALS = {
    "pods": "Pod",
    "events": "Event",
    "deployments": "Deployment",
    "jobs": "Job",
    "configmaps": "ConfigMap",
    "namespaces": "Namespace",
    "nodes": "Node",
    "customresourcedefinitions": "CustomResourceDefinition",
    "inferenceservices": "InferenceService",
    "revisions": "Revision",
    "services": "Service",
}


def load(*names: str) -> list[dict]:
    docs = []
    for name in names:
        docs += [d for d in yaml.safe_load_all((OBJECTS / name).read_text()) if d]
    return docs


def _labels_match(obj: dict, selector: str | None) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        key, eq, value = term.partition("=")
        if eq and labels.get(key) != value:
            return False
        if not eq and key not in labels:
            return False
    return True


def _field(obj: dict, path: str):
    for part in path.split("."):
        obj = (obj or {}).get(part) if isinstance(obj, dict) else None
    return obj


def _fields_match(obj: dict, selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if str(_field(obj, key)) != value:
            return False
    return True


class Recorded:
    """ClusterReads' interface over recorded objects. `watch` maps an object name to the sequence
    of versions a watch would deliver (recorded too)."""

    def __init__(self, objects: list[dict], watch: dict[str, list[dict]] | None = None, pod_watch: list | None = None):
        self.objects = objects
        self.watch = watch or {}
        self.pod_watch = pod_watch or []

    def find(self, kind: str, namespace: str | None = None, name: str | None = None, labels=None, fields=None) -> list[dict]:
        out = []
        for o in self.objects:
            meta = o.get("metadata") or {}
            if o.get("kind") != kind:
                continue
            if (
                namespace is not None
                and kind not in ("Node", "Namespace", "CustomResourceDefinition")
                and meta.get("namespace") != namespace
            ):
                continue
            if name is not None and meta.get("name") != name:
                continue
            if _labels_match(o, labels) and _fields_match(o, fields):
                out.append(o)
        return out

    def _one(self, kind, namespace, name):
        found = self.find(kind, namespace, name)
        return found[0] if found else None

    # ClusterReads' methods
    def isvc(self, namespace, name):
        return self._one("InferenceService", namespace, name)

    def isvc_ready(self, namespace, name):
        from sai.cluster.wait import is_ready

        return is_ready(self.isvc(namespace, name))

    def watch_custom(self, gvp, namespace, name, timeout_s):
        yield from self.watch.get(name, [])

    def watch_pods(self, namespace, selector, timeout_s):
        for kind, pod in self.pod_watch:
            self.objects = [
                o
                for o in self.objects
                if o is not pod and not (o.get("kind") == "Pod" and o["metadata"]["name"] == pod["metadata"]["name"])
            ]
            if kind != "DELETED":
                self.objects.append(pod)
            yield kind, pod

    def ksvc(self, namespace, name):
        return self._one("Service", namespace, name)

    def revision(self, namespace, name):
        return self._one("Revision", namespace, name)

    def pods(self, namespace, selector):
        return self.find("Pod", namespace, labels=selector)

    def events(self, namespace, field_selector=""):
        return self.find("Event", namespace, fields=field_selector)

    def deployments(self, namespace, selector=""):
        return self.find("Deployment", namespace, labels=selector)

    def deployment(self, namespace, name):
        return self._one("Deployment", namespace, name)

    def job(self, namespace, name):
        return self._one("Job", namespace, name)

    def configmap(self, namespace, name):
        return self._one("ConfigMap", namespace, name)

    def namespace(self, name):
        return self._one("Namespace", None, name)

    def nodes(self):
        return self.find("Node")

    def crds(self):
        return self.find("CustomResourceDefinition")


class RecordedAPIServer:
    """GET /api/v1/... and /apis/G/V/... over the recorded objects, on 127.0.0.1:<free port>."""

    def __init__(self, objects: list[dict]):
        self.recorded = Recorded(objects)
        self.requests: list[str] = []
        self.agents: list[str] = []  # User-Agent of each request: which client asked
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                server.agents.append(self.headers.get("User-Agent", ""))
                code, body = server.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "recorded",
                    "clusters": [{"name": "recorded", "cluster": {"server": self.url}}],
                    "contexts": [{"name": "recorded", "context": {"cluster": "recorded", "user": "recorded"}}],
                    "users": [{"name": "recorded", "user": {"token": "recorded"}}],
                }
            )
        )
        return path

    def answer(self, raw: str) -> tuple[int, dict]:
        url = urllib.parse.urlsplit(raw)
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.strip("/").split("/")
        parts = parts[2:] if parts[0] == "api" else parts[3:]  # drop api/v1 or apis/G/V
        if not parts or parts[0] not in PLURALS and parts[0] != "namespaces":
            return 404, _status(404, f"{url.path}: not recorded")  # discovery, /version, other kinds
        namespace = name = None
        if parts[:1] == ["namespaces"] and len(parts) >= 3:
            namespace, parts = parts[1], parts[2:]
        plural, name = parts[0], (parts[1] if len(parts) > 1 else None)
        if plural == "namespaces" and namespace is None and name is None and len(parts) == 2:
            name = parts[1]
        kind = PLURALS.get(plural)
        if kind is None:
            return 404, _status(404, f"no such resource {plural}")
        found = self.recorded.find(kind, namespace, name, query.get("labelSelector"), query.get("fieldSelector"))
        if name is not None:
            return (200, found[0]) if found else (404, _status(404, f'{plural} "{name}" not found'))
        return 200, {"apiVersion": "v1", "kind": f"{kind}List", "metadata": {"resourceVersion": "1"}, "items": found}


def _status(code: int, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "NotFound" if code == 404 else "",
        "code": code,
    }

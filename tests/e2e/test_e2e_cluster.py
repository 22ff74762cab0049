"""End to end on a cluster, in order: ISVC Ready; image-classify returns the cat; text-sentiment
answers; an upload to MinIO produces its result object; an async call reaches a callback receiver
in the cluster; the predictor scales to zero within the configured window; the next request wakes
it (cold-start time printed); a bad request gets 4xx JSON through the whole path.

Skipped unless SAI_E2E_KUBECONFIG is set (tests/e2e/conftest.py). Tests share state through the
cluster and run in file order; a failure stops the ones after it (-x in k8s/e2e-kind.sh)."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from common.result_keys import RESULTS_PREFIX, result_key
from sai import cluster
from sai.cluster import coldstart, wait
from sai.local.stack import load_stack

ISVC = cluster.isvc_name()
CAT_LABELS = ("tiger cat", "tabby", "egyptian cat")
STACK = Path(__file__).resolve().parents[2] / "stack.yml"


def upload_result(key: str) -> tuple[str, str, str]:
    """(source bucket, results bucket, result key) for an upload of `key`: the one bucket
    object-classify classifies (the chart's MinIO uploads bucket) and where it writes the result,
    with the settings stack.yml deploys it with (tests/test_events_object_classify.py checks this
    against what the function really writes)."""
    env = load_stack(STACK).functions["object-classify"].environment
    source = env["SOURCE_BUCKETS"]
    return source, env.get("RESULTS_BUCKET") or source, result_key(source, key, env.get("RESULTS_PREFIX", RESULTS_PREFIX))


@pytest.fixture(scope="module")
def cat_jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def classify(gateway: str, body: bytes, timeout: float = 600) -> requests.Response:
    return requests.post(f"{gateway}/function/image-classify", data=body, headers={"Content-Type": "image/jpeg"}, timeout=timeout)


def assert_cat(resp: requests.Response) -> None:
    assert resp.status_code == 200, resp.text[:500]
    labels = [p["label"].lower() for p in resp.json()["predictions"][:3]]
    assert any(any(c in label for c in CAT_LABELS) for label in labels), labels


def test_1_inferenceservice_ready(reads, namespace):
    isvc = wait.wait_ready(reads, namespace, ISVC, timeout_s=900)
    assert wait.is_ready(isvc)
    assert reads.isvc_ready(namespace, ISVC)  # the KServe SDK agrees


def test_2_image_classify_returns_the_cat(gateway, cat_jpeg):
    assert_cat(classify(gateway, cat_jpeg))


def test_3_text_sentiment_answers(gateway):
    resp = requests.post(f"{gateway}/function/text-sentiment", json={"text": "What a wonderful day!"}, timeout=600)
    assert resp.status_code == 200, resp.text[:500]
    assert resp.json()["label"] == "positive"


@pytest.fixture(scope="module")
def minio(kubeconfig, reads, namespace):
    """MinIO through `kubectl port-forward` (a tunnel, not a read) with the root credentials from
    the chart's Secret (only root may write incoming/; object-classify's user may not)."""
    import boto3
    from botocore.config import Config

    from sai.cluster.project import tool_path

    secret = reads.core.read_namespaced_secret("serverless-ai-minio", namespace).data
    user, password = (base64.b64decode(secret[k]).decode() for k in ("rootUser", "rootPassword"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            str(tool_path("kubectl")),
            *kubeconfig.helm_args(),
            "-n",
            namespace,
            "port-forward",
            f"svc/{cluster.RELEASE}-minio",
            f"{port}:9000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("kubectl port-forward to MinIO did not come up") from None
                time.sleep(0.5)
        yield boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id=user,
            aws_secret_access_key=password,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
    finally:
        proc.terminate()
        proc.wait(10)


def test_4_upload_to_minio_produces_its_result(minio, cat_jpeg):
    key = f"incoming/e2e-{uuid.uuid4().hex[:8]}.jpg"
    source, results_bucket, result = upload_result(key)
    minio.put_object(Bucket=source, Key=key, Body=cat_jpeg, ContentType="image/jpeg")
    deadline = time.monotonic() + 300  # MinIO redelivers every 3 s until object-classify answers 2xx
    while True:
        try:
            doc = json.loads(minio.get_object(Bucket=results_bucket, Key=result)["Body"].read())
            break
        except minio.exceptions.NoSuchKey:
            assert time.monotonic() < deadline, f"no result for {key} after 300 s"
            time.sleep(3)
    assert doc["source"]["key"] == key
    labels = [p["label"].lower() for p in doc["predictions"][:3]]
    assert any(any(c in label for c in CAT_LABELS) for label in labels), labels


RECEIVER = """
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        print("CALLBACK", self.headers.get("X-Call-Id"), self.headers.get("X-Function-Status"), body.decode(errors="replace"), flush=True)
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("", 8080), H).serve_forever()
"""


@pytest.fixture(scope="module")
def callback_receiver(reads, namespace):
    """A Pod + Service in the cluster that prints each callback it receives (test scaffolding,
    deleted afterwards)."""
    name = f"sai-e2e-callback-{uuid.uuid4().hex[:6]}"
    labels = {"app.kubernetes.io/name": name}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "containers": [
                {
                    "name": "receiver",
                    "image": os.environ.get("SAI_E2E_CALLBACK_IMAGE", "python:3.11-alpine"),
                    "command": ["python", "-u", "-c", RECEIVER],
                    "ports": [{"containerPort": 8080}],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65534,
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ]
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": labels, "ports": [{"port": 8080, "targetPort": 8080}]},
    }
    reads.core.create_namespaced_pod(namespace, pod)
    reads.core.create_namespaced_service(namespace, svc)
    try:
        deadline = time.monotonic() + 300
        while reads.core.read_namespaced_pod(name, namespace).status.phase != "Running":
            assert time.monotonic() < deadline, "callback receiver did not start"
            time.sleep(2)
        yield name, f"http://{name}.{namespace}.svc.cluster.local:8080/hook"
    finally:
        reads.core.delete_namespaced_service(name, namespace)
        reads.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)


def test_5_async_call_reaches_a_callback_in_the_cluster(gateway, reads, namespace, callback_receiver):
    name, url = callback_receiver
    resp = requests.post(
        f"{gateway}/async-function/text-sentiment", json={"text": "I love this."}, headers={"X-Callback-Url": url}, timeout=60
    )
    assert resp.status_code == 202, resp.text[:500]
    call_id = resp.headers.get("X-Call-Id")
    deadline = time.monotonic() + 300
    while True:
        log = reads.core.read_namespaced_pod_log(name, namespace)
        lines = [line for line in log.splitlines() if line.startswith("CALLBACK") and (not call_id or call_id in line)]
        if lines:
            break
        assert time.monotonic() < deadline, f"no callback for call {call_id} after 300 s:\n{log}"
        time.sleep(3)
    assert '"positive"' in lines[0], lines[0]


@pytest.fixture(scope="module")
def window(reads, namespace) -> dict:
    isvc = reads.isvc(namespace, ISVC)
    rev = isvc["status"]["components"]["predictor"]["latestReadyRevision"]
    return coldstart.scale_window(reads.revision(namespace, rev), reads.configmap("knative-serving", "config-autoscaler"))


def test_6_predictor_scales_to_zero_within_the_window(reads, namespace, window, e2e_report):
    slack = 120  # Knative's reconcile and pod termination
    waited = coldstart.wait_for_zero(reads, namespace, window["after_last_request_s"] + slack)
    print(f"\nTriton scaled to zero after {waited:.0f}s; {coldstart.window_text(window)}")
    e2e_report["scaled_to_zero_after_s"] = round(waited, 1)
    e2e_report["scale_to_zero_window"] = window
    assert not coldstart.live_pods(reads.pods(namespace, cluster.TRITON_COMPONENT))


def test_7_next_request_wakes_it(reads, namespace, gateway, cat_jpeg, e2e_report):
    url = f"{gateway}/function/image-classify"
    sent = coldstart.now()
    ttfb, total, code, body = coldstart.send(url, cat_jpeg, "image/jpeg", 600)
    rep = coldstart.report(
        sent,
        ttfb,
        total,
        code,
        reads.pods(namespace, cluster.TRITON_COMPONENT),
        reads.events(namespace, "involvedObject.kind=Pod"),
    )
    print("\n" + coldstart.render(rep))
    e2e_report["cold_start"] = {"url": url, **rep}
    assert code == 200, body[:500]
    assert rep["woke_from_zero"], "the request was answered but no new Triton pod started for it"
    labels = [p["label"].lower() for p in json.loads(body)["predictions"][:3]]
    assert any(any(c in label for c in CAT_LABELS) for label in labels), labels


def test_8_bad_request_is_4xx_json_through_the_whole_path(gateway):
    resp = requests.post(
        f"{gateway}/function/image-classify", data=b"this is not an image", headers={"Content-Type": "image/jpeg"}, timeout=120
    )
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:500])
    err = resp.json()["error"]
    assert err["code"] and err["message"]

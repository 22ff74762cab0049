"""Observability against the real platform: the gateway's Prometheus metrics (OpenFaaS's names),
X-Call-Id / X-Duration-Seconds on responses, and one call followed by its id through the
gateway's, the function's and Triton's logs with `sai logs --call` (as a user runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from sai.local.processes import wait_until
from sai.state import free_port


def scrape(gateway: str) -> dict[tuple[str, tuple], float]:
    r = requests.get(gateway + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_calls_with_openfaas_names_and_labels(gateway, cat_jpeg):
    before = scrape(gateway)
    fn = "image-classify.openfaas-fn"
    ok = requests.post(gateway + "/function/image-classify", data=cat_jpeg, timeout=60)
    bad = requests.post(gateway + "/function/image-classify", data=b"not an image", timeout=60)
    assert (ok.status_code, bad.status_code) == (200, 415)
    after = scrape(gateway)

    for code in ("200", "415"):
        total = "gateway_function_invocation_total"
        assert value(after, total, function_name=fn, code=code) - value(before, total, function_name=fn, code=code) == 1
        count = "gateway_functions_seconds_count"
        assert value(after, count, function_name=fn, code=code) - value(before, count, function_name=fn, code=code) == 1
    # a histogram with client_golang's default buckets: the +Inf bucket holds every call
    inf = value(after, "gateway_functions_seconds_bucket", function_name=fn, code="200", le="+Inf")
    assert inf == value(after, "gateway_functions_seconds_count", function_name=fn, code="200") >= 1
    assert ("gateway_functions_seconds_bucket", (("code", "200"), ("function_name", fn), ("le", "0.005"))) in after
    # what runs, what is in flight, the async queue, restarts
    for name in ("image-classify", "text-sentiment", "object-classify"):
        assert value(after, "gateway_service_count", function_name=f"{name}.openfaas-fn") == 1
        assert (("sai_function_inflight", (("function_name", f"{name}.openfaas-fn"),))) in after
        assert value(after, "sai_component_restarts_total", component=name) == 0
    assert ("sai_component_restarts_total", (("component", "tritonserver"),)) in after
    assert ("sai_async_queue_depth", (("state", "pending"),)) in after


def test_metrics_are_not_behind_basic_auth_but_system_routes_are(gateway):
    assert requests.get(gateway + "/system/functions", timeout=10).status_code == 401
    assert requests.get(gateway + "/metrics", timeout=10).status_code == 200


def test_responses_carry_the_call_id_and_duration(gateway):
    mine = f"test-{uuid.uuid4()}"
    r = requests.post(gateway + "/function/text-sentiment", json={"text": "fine"}, headers={"X-Call-Id": mine}, timeout=60)
    assert r.status_code == 200 and r.headers["X-Call-Id"] == mine
    assert float(r.headers["X-Duration-Seconds"]) > 0
    # set by the gateway when the caller sends none, and on error answers too
    r = requests.post(gateway + "/function/text-sentiment", json={"text": " "}, timeout=60)
    assert r.status_code == 400 and uuid.UUID(r.headers["X-Call-Id"])
    assert float(r.headers["X-Duration-Seconds"]) > 0


@pytest.mark.slow
def test_one_call_followed_across_gateway_function_and_triton(tmp_path):
    """`sai up --triton-log-verbose 1`, one call with a known id, then `sai logs --call ID` finds it
    in the platform (gateway) log, the function's log and Triton's log."""
    env = {**os.environ, "SAI_STATE_DIR": str(tmp_path)}
    port = free_port()
    ports = ["--port", str(port), "--triton-http-port", str(free_port()), "--triton-grpc-port", str(free_port())]
    ports += ["--triton-metrics-port", str(free_port())]

    def sai(*args, timeout=240):
        return subprocess.run([sys.executable, "-m", "sai", *args], env=env, capture_output=True, text=True, timeout=timeout)

    up = sai("up", *ports, "--only", "text-sentiment", "--triton-log-verbose", "1")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{port}/metrics" in up.stdout and "nv_inference_" in up.stdout
        call_id = f"trace-{uuid.uuid4()}"
        url = f"http://127.0.0.1:{port}/function/text-sentiment"
        r = requests.post(url, json={"text": "What a wonderful day!"}, headers={"X-Call-Id": call_id}, timeout=60)
        assert r.status_code == 200 and r.headers["X-Call-Id"] == call_id

        def traced():
            out = sai("logs", "--call", call_id, timeout=30)
            return out if out.returncode == 0 and "== triton" in out.stdout else None

        found = wait_until(traced, 15, interval=0.5)  # the gateway logs once the answer is sent
        assert found, sai("logs", "--call", call_id).stderr
        sections = found.stdout.split("== ")
        assert [s.split("\n", 1)[0] for s in sections if s] == ["platform", "text-sentiment", "triton"]
        assert f"call {call_id}: POST /function/text-sentiment -> 200" in found.stdout  # gateway
        assert f"call {call_id}: POST / -> 200" in found.stdout  # function
        assert f"[request id: {call_id}]" in found.stdout  # Triton

        assert sai("logs", "--call", "no-such-call-id").returncode != 0
        metrics = sai("metrics", "--interval", "0.5")
        assert metrics.returncode == 0 and "text-sentiment" in metrics.stdout and "text_encoder" in metrics.stdout
    finally:
        sai("down")


def test_async_calls_are_counted_by_outcome(gateway, receiver):
    def finished(outcome):
        return value(scrape(gateway), "sai_async_calls_finished_total", outcome=outcome)

    before = {o: finished(o) for o in ("no_callback", "delivered")}
    plain = requests.post(gateway + "/async-function/text-sentiment", json={"text": "fine"}, timeout=30)
    hooked = requests.post(
        gateway + "/async-function/text-sentiment",
        json={"text": "fine"},
        headers={"X-Callback-Url": receiver.url},
        timeout=30,
    )
    assert (plain.status_code, hooked.status_code) == (202, 202)
    receiver.wait_for([hooked.headers["X-Call-Id"]])
    assert wait_until(lambda: finished("no_callback") == before["no_callback"] + 1, 20, interval=0.1)
    assert wait_until(lambda: finished("delivered") == before["delivered"] + 1, 20, interval=0.1)
    depth = scrape(gateway)
    assert ("sai_async_queue_depth", (("state", "delivering"),)) in depth

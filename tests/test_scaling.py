"""Scale to zero, wake on request, scale out and the models' memory budget, on the real platform:
a real tritonserver with the real models, real function processes, real HTTP (docs/scaling.md).
Durations are seconds: a short zero-duration, labels set through the deploy API as faas-cli sends them."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time

import grpc
import pytest
import requests
from helpers import project_copy, running_platform

from common.result_keys import result_key
from sai.local.processes import wait_until
from sai.state import free_port

pytestmark = pytest.mark.slow
P = "com.openfaas.scale."
ZERO_S = 2.0  # the platform's zero-duration in these tests


def repository_index(platform) -> dict[str, str]:
    """Model -> state, as Triton's repository index gives it (RepositoryIndex over the platform's
    private gRPC socket; inference.RepositoryIndexResponse decoded by hand: repeated ModelIndex
    models = 1 {name = 1, version = 2, state = 3, reason = 4}, all strings)."""
    with grpc.insecure_channel(platform.triton.server.grpc_url) as channel:
        data = channel.unary_unary("/inference.GRPCInferenceService/RepositoryIndex")(b"", timeout=30)

    def fields(buf: bytes):
        i = 0
        while i < len(buf):
            key, i = _varint(buf, i)
            length, i = _varint(buf, i)  # every field here is length-delimited (wire type 2)
            yield key >> 3, buf[i : i + length]
            i += length

    out = {}
    for number, model in fields(data):
        if number == 1:
            parts = dict(fields(model))
            out[parts[1].decode()] = parts.get(3, b"").decode()
    return out


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return value, i
        shift += 7


class Client:
    def __init__(self, platform):
        self.platform = platform
        self.url = platform.gateway_url
        user, password = platform.credentials
        self.auth = (user, password)

    def classify(self, jpeg: bytes, timeout: float = 60) -> requests.Response:
        return requests.post(f"{self.url}/function/image-classify", data=jpeg, timeout=timeout)

    def status(self, name: str = "image-classify") -> dict:
        return requests.get(f"{self.url}/system/function/{name}", auth=self.auth, timeout=10).json()

    def label(self, labels: dict[str, str], name: str = "image-classify") -> None:
        fn = self.status(name)
        body = {"service": name, "image": fn["image"], "envVars": fn["envVars"], "labels": labels}
        r = requests.put(f"{self.url}/system/functions", json=body, auth=self.auth, timeout=60)
        assert r.status_code == 200, r.text

    def scale(self, replicas: int, name: str = "image-classify") -> None:
        body = {"serviceName": name, "replicas": replicas}
        r = requests.post(f"{self.url}/system/scale-function/{name}", json=body, auth=self.auth, timeout=60)
        assert r.status_code == 202, r.text

    def metric(self, sample: str) -> float:
        """The value of one exposition line's sample (0 when absent)."""
        for line in requests.get(f"{self.url}/metrics", timeout=10).text.splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def at_zero(self, name: str = "image-classify", within: float = 30) -> bool:
        return bool(wait_until(lambda: self.status(name)["replicas"] == 0, within, interval=0.1))


def top(r: requests.Response) -> str:
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["predictions"][0]["label"]


@pytest.fixture(scope="module")
def scaling(tmp_path_factory):
    """image-classify alone, going to zero after ZERO_S idle."""
    with running_platform(tmp_path_factory.mktemp("sai-scaling"), only=["image-classify"], zero_duration_s=ZERO_S) as p:
        yield Client(p)


def test_scales_to_zero_unloads_its_model_and_a_call_wakes_both(scaling, cat_jpeg):
    c, platform = scaling, scaling.platform
    assert top(c.classify(cat_jpeg)) == "tiger cat"
    pid = platform.functions["image-classify"].process.pid
    assert c.at_zero(within=ZERO_S + 10)
    assert not os.path.exists(f"/proc/{pid}"), "the function's process is gone"
    status = c.status()
    assert (status["replicas"], status["availableReplicas"]) == (0, 0)
    assert c.metric('gateway_service_count{function_name="image-classify.openfaas-fn"}') == 0
    # no function runs that calls image_classifier: it is unloaded after the same idle time
    assert wait_until(lambda: repository_index(platform).get("image_classifier") == "UNAVAILABLE", ZERO_S + 10, interval=0.2)
    assert requests.get(f"http://{platform.triton_url}/v2/models/image_classifier/ready", timeout=5).status_code != 200
    state = json.loads((platform.settings.state_dir / "run" / "state.json").read_text())
    assert state["functions"]["image-classify"]["idle_s"] >= ZERO_S and state["models"]["loaded"] == {}

    woken = c.metric('sai_cold_starts_total{function_name="image-classify.openfaas-fn"}')
    r = c.classify(cat_jpeg)
    assert top(r) == "tiger cat"  # the right answer, from a model and a process that were not there
    assert repository_index(platform)["image_classifier"] == "READY"
    assert c.status()["availableReplicas"] == 1
    assert c.metric('sai_cold_starts_total{function_name="image-classify.openfaas-fn"}') == woken + 1
    for phase in ("models", "process", "imports", "total", "first_request"):
        label = f'function_name="image-classify.openfaas-fn",phase="{phase}"'
        assert c.metric(f"sai_cold_start_seconds_count{{{label}}}") >= 1, phase


def test_status_shows_zero_and_idle_time(scaling, cat_jpeg):
    c, platform = scaling, scaling.platform
    assert c.at_zero(within=ZERO_S + 10)
    # and its model unloaded: while Triton unloads one it is not ready (strict readiness), for a second
    assert wait_until(lambda: repository_index(platform).get("image_classifier") == "UNAVAILABLE", ZERO_S + 10, interval=0.2)
    assert wait_until(lambda: requests.get(f"http://{platform.triton_url}/v2/health/ready", timeout=5).ok, 10, interval=0.2)
    env = {**os.environ, "SAI_STATE_DIR": str(platform.settings.state_dir)}
    out = subprocess.run([sys.executable, "-m", "sai", "status"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr  # at zero is not degraded
    line = next(x for x in out.stdout.splitlines() if "function/image-classify" in x)
    assert "ZERO" in line and "0/0 replicas, idle " in line and "wakes on a call" in line
    top(c.classify(cat_jpeg))
    out = subprocess.run([sys.executable, "-m", "sai", "status"], capture_output=True, text=True, env=env, timeout=60)
    line = next(x for x in out.stdout.splitlines() if "function/image-classify" in x)
    assert "READY" in line and "1/1 replicas" in line and "idle" not in line


def test_calls_held_while_waking_all_get_answers(scaling, cat_jpeg):
    c = scaling
    assert c.at_zero(within=ZERO_S + 10)
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: c.classify(cat_jpeg), range(12)))
    assert [top(r) for r in answers] == ["tiger cat"] * 12
    assert c.status()["replicas"] == 1  # one wake for all of them


def test_an_async_call_wakes_the_function(scaling, cat_jpeg, receiver):
    c = scaling
    assert c.at_zero(within=ZERO_S + 10)
    r = requests.post(
        f"{c.url}/async-function/image-classify", data=cat_jpeg, headers={"X-Callback-Url": receiver.url}, timeout=10
    )
    assert r.status_code == 202, r.text
    (got,) = receiver.wait_for([r.headers["X-Call-Id"]], timeout=60)[r.headers["X-Call-Id"]]
    assert got["headers"].get("X-Function-Status") == "200", got
    assert json.loads(got["body"])["predictions"][0]["label"] == "tiger cat"


def test_no_call_fails_across_scale_downs(scaling, cat_jpeg):
    """Calls at random gaps around a half-second zero-duration, from two clients: many land while
    the last replica drains or stops, or while it wakes. Every one is answered, right."""
    c = scaling
    c.label({P + "zero": "true", P + "zero-duration": "500ms"})
    try:
        failures, rng = [], random.Random(25)

        def trickle(n: int) -> None:
            for _ in range(n):
                time.sleep(rng.uniform(0.1, 1.2))
                r = c.classify(cat_jpeg)
                if r.status_code != 200 or r.json()["predictions"][0]["label"] != "tiger cat":
                    failures.append((r.status_code, r.text[:200]))

        woken = c.metric('sai_cold_starts_total{function_name="image-classify.openfaas-fn"}')
        clients = [threading.Thread(target=trickle, args=(20,)) for _ in range(2)]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        assert not failures, failures
        # it did go to zero and back between calls (else this proved nothing)
        assert c.metric('sai_cold_starts_total{function_name="image-classify.openfaas-fn"}') - woken >= 3
    finally:
        c.label({})


def test_scale_out_to_max_under_load_and_back_to_zero(scaling, cat_jpeg):
    c = scaling
    c.label(
        {
            P + "max": "2",
            P + "type": "capacity",
            P + "target": "1",
            P + "target-proportion": "1.0",
            P + "zero": "true",
            P + "zero-duration": "6s",  # past the 5 s the load is averaged over: down to 1 first, then 0
            P + "down.window": "1s",
        }
    )
    try:
        stop, failures = threading.Event(), []

        def load() -> None:
            while not stop.is_set():
                r = c.classify(cat_jpeg)
                if r.status_code != 200:
                    failures.append(r.status_code)

        clients = [threading.Thread(target=load) for _ in range(4)]
        for t in clients:
            t.start()
        try:
            assert wait_until(lambda: c.status()["availableReplicas"] == 2, 30, interval=0.2), c.status()
            time.sleep(2)
            assert c.status()["replicas"] == 2  # never past max
            served = {r.name for r in c.platform.functions["image-classify"].replicas}
            assert served == {"image-classify-0", "image-classify-1"}
        finally:
            stop.set()
            for t in clients:
                t.join()
        assert not failures, failures
        back_to_one = time.monotonic()
        assert wait_until(lambda: c.status()["replicas"] == 1, 15, interval=0.1)
        assert time.monotonic() - back_to_one >= 0.5  # held by the down window, not at the first quiet tick
        assert wait_until(lambda: c.status()["replicas"] == 0, 20, interval=0.1)
    finally:
        c.label({})


def test_the_scale_api_drains_before_it_stops(scaling, cat_jpeg):
    """Scaling from 2 to 1 through the API while calls run: none of them fails."""
    c = scaling
    c.scale(2)
    try:
        assert c.status()["availableReplicas"] == 2
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            pending = [pool.submit(c.classify, cat_jpeg) for _ in range(30)]
            time.sleep(0.3)
            c.scale(1)
            answers = [f.result() for f in pending]
        assert [r.status_code for r in answers] == [200] * 30
        assert c.status()["replicas"] == 1
    finally:
        c.scale(1)


def test_the_scale_api_from_zero_loads_the_models_too(scaling, cat_jpeg):
    """`faas-cli scale --replicas 1` for a function at zero whose model was unloaded: the replica
    starts with its model, so its first call is answered (not Triton's "unknown model")."""
    c, platform = scaling, scaling.platform
    c.scale(0)  # clears the floor the previous test set; it goes to zero, its model after ZERO_S
    try:
        assert c.at_zero(within=ZERO_S + 10)
        assert wait_until(lambda: repository_index(platform).get("image_classifier") == "UNAVAILABLE", ZERO_S + 10, interval=0.2)
        c.scale(1)
        assert repository_index(platform)["image_classifier"] == "READY"
        assert top(c.classify(cat_jpeg)) == "tiger cat"
    finally:
        c.scale(1)


@pytest.fixture(scope="module")
def budget(tmp_path_factory):
    """image-classify and text-embed with a budget that holds image_classifier's stub or
    text_encoder's two, not both (about 130 and 400 MB), functions at zero until called."""
    with running_platform(
        tmp_path_factory.mktemp("sai-budget"),
        only=["image-classify", "text-embed"],
        models_memory_mb=450.0,
        zero_duration_s=600.0,  # models stay loaded unless the budget needs room
    ) as p:
        yield Client(p)


def test_memory_budget_unloads_the_least_recently_used_model(budget, cat_jpeg, caplog):
    caplog.set_level(logging.INFO, logger="sai.local.on_demand")
    c, platform = budget, budget.platform
    # with a budget, functions that may scale to zero start there, and no model loads before a call needs it
    assert c.status("image-classify")["replicas"] == c.status("text-embed")["replicas"] == 0
    assert set(platform.triton.loaded) == set()
    assert top(c.classify(cat_jpeg)) == "tiger cat"
    assert set(platform.triton.loaded) == {"image_classifier"}
    c.scale(0, "image-classify")  # no running function calls image_classifier now; it stays loaded
    assert repository_index(platform)["image_classifier"] == "READY"

    r = requests.post(f"{c.url}/function/text-embed", json={"text": "Scale to zero, wake on request."}, timeout=120)
    assert r.status_code == 200 and r.json()["dim"] == 384, r.text
    index = repository_index(platform)
    assert index["text_encoder"] == "READY" and index["image_classifier"] == "UNAVAILABLE"  # it made room
    assert "memory budget: unloading image_classifier to load text_encoder" in caplog.text
    memory = platform.on_demand.state()
    assert 0 < memory["memory_mb"] <= 450 and set(memory["loaded"]) == {"text_encoder"}

    # text-embed runs: text_encoder is pinned; image-classify's model loads over budget rather than fail
    assert top(c.classify(cat_jpeg)) == "tiger cat"
    assert {"image_classifier", "text_encoder"} <= set(platform.triton.loaded)


@pytest.fixture(scope="module")
def slow_wake(tmp_path_factory):
    """object-classify with its bucket events, going to zero after ZERO_S, and a wake timeout far
    below its wake (~0.3 s): every call that wakes it outlasts the deadline."""
    with running_platform(
        tmp_path_factory.mktemp("sai-wake"),
        only=["object-classify"],
        with_s3=True,
        s3_port=free_port(),
        zero_duration_s=ZERO_S,
        wake_timeout_s=0.02,
        s3_event_retry_s=0.5,
    ) as p:
        yield Client(p)


def test_past_the_wake_timeout_a_call_gets_503_and_the_wake_goes_on(slow_wake):
    c, name = slow_wake, "object-classify"
    assert c.at_zero(name, within=ZERO_S + 10)
    woken = c.metric(f'sai_cold_starts_total{{function_name="{name}.openfaas-fn"}}')
    r = requests.post(f"{c.url}/function/{name}", json={"Records": []}, timeout=30)
    assert r.status_code == 503 and r.headers["Retry-After"].isdigit(), (r.status_code, r.headers)
    assert r.json()["error"]["code"] == "function_unavailable" and "waking" in r.json()["error"]["message"]
    # the wake was not cancelled with the call: it finishes (counted once), and a retry is answered
    woke = f'sai_cold_starts_total{{function_name="{name}.openfaas-fn"}}'
    assert wait_until(lambda: c.metric(woke) == woken + 1, 30, interval=0.05)
    assert c.status(name)["availableReplicas"] == 1
    r = requests.post(f"{c.url}/function/{name}", json={"Records": []}, timeout=30)
    assert r.status_code == 200, r.text
    assert c.metric(woke) == woken + 1  # no second wake


def test_a_bucket_event_wakes_its_function_and_is_not_lost(slow_wake, coffee_jpeg):
    """An upload while object-classify is at zero: the event's first delivery gets the 503 of a wake
    past its timeout, stays queued, and the retry is classified (the notifier retries, as MinIO does)."""
    c, platform = slow_wake, slow_wake.platform
    assert c.at_zero("object-classify", within=ZERO_S + 10)
    s3 = platform.s3
    key = "incoming/wake/coffee.jpg"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=coffee_jpeg)

    def stored():
        try:
            return json.loads(s3.client().get_object(Bucket=s3.bucket, Key=result_key(s3.bucket, key))["Body"].read())
        except Exception:  # noqa: BLE001 - not written yet
            return None

    assert wait_until(stored, 60, interval=0.2), "no result for the upload"
    assert stored()["predictions"][0]["label"] == "espresso"
    assert platform.s3_notifier.failed_attempts >= 1  # it did meet the function at zero, past the timeout


@pytest.fixture(scope="module")
def broken_model(tmp_path_factory):
    """image-classify on a copy of the project whose image_classifier the test can break while
    the function is at zero."""
    root = project_copy(tmp_path_factory.mktemp("wake-project"))
    with running_platform(
        tmp_path_factory.mktemp("sai-broken"),
        stack_file=root / "stack.yml",
        model_repository=root / "model_repository",
        only=["image-classify"],
        zero_duration_s=ZERO_S,
    ) as p:
        yield Client(p), root / "model_repository" / "image_classifier" / "1" / "model.onnx"


def test_a_wake_whose_model_fails_to_load_answers_503_and_the_next_call_tries_again(broken_model, cat_jpeg):
    (c, onnx), platform = broken_model, broken_model[0].platform
    assert c.at_zero(within=ZERO_S + 10)
    assert wait_until(lambda: repository_index(platform).get("image_classifier") == "UNAVAILABLE", ZERO_S + 10, interval=0.2)
    good = onnx.read_bytes()
    onnx.write_bytes(b"not an onnx model")
    try:
        r = c.classify(cat_jpeg)
        assert r.status_code == 503 and r.headers["Retry-After"].isdigit(), (r.status_code, r.text)
        error = r.json()["error"]
        assert error["code"] == "function_unavailable" and "image_classifier" in error["message"], error
        assert c.status()["replicas"] == 0  # no replica left running without its model
    finally:
        onnx.write_bytes(good)
    assert top(c.classify(cat_jpeg)) == "tiger cat"  # the next call wakes it again, and this time it loads

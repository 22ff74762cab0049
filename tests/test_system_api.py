"""The OpenFaaS /system/* API on the local platform, over HTTP against a real platform
(gateway + function processes; no Triton needed by these functions), with the exact requests
faas-cli sends (openfaas/faas-cli proxy/: deploy.go, delete.go, scale.go, secret.go, logs.go,
version.go, namespaces.go) and faas-provider's types as bodies."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import threading
import time

import pytest
import requests
from helpers import function_project, start_platform

from sai.state import read_state


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return function_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def api(project, tmp_path_factory):
    platform = start_platform(project, tmp_path_factory.mktemp("state"))
    yield platform
    platform.stop()


class Client:
    """The gateway as faas-cli talks to it: basic auth, JSON bodies."""

    def __init__(self, platform):
        self.url, self.auth = platform.gateway_url, platform.credentials

    def __call__(self, method, path, body=None, **kw):
        data = None if body is None else json.dumps(body)
        return requests.request(method, self.url + path, data=data, auth=self.auth, timeout=60, **kw)


@pytest.fixture(scope="module")
def faas(api):
    return Client(api)


def deployment(service, image, **fields):
    """types.FunctionDeployment as faas-cli marshals it (proxy/deploy.go: omitempty fields left out)."""
    return {"service": service, "image": image, "labels": {}, "annotations": {}, **fields}


def assert_error(r, status, code=None):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    err = r.json()["error"]
    assert err["message"]
    if code:
        assert err["code"] == code, err


def test_info_and_namespaces(faas):
    r = faas("GET", "/system/info")  # faas-cli version (proxy/version.go)
    assert r.status_code == 200
    info = r.json()
    assert info["provider"]["provider"] == "sai" and info["provider"]["orchestration"] == "local"
    assert info["version"]["release"] and "sha" in info["version"] and info["arch"]
    r = faas("GET", "/system/namespaces")  # faas-cli namespaces (proxy/namespaces.go)
    assert r.status_code == 200 and r.json() == ["openfaas-fn"]


def test_system_routes_need_basic_auth(api):
    routes = [("GET", "/system/info"), ("GET", "/system/namespaces"), ("GET", "/system/functions"),
              ("POST", "/system/functions"), ("PUT", "/system/functions"), ("DELETE", "/system/functions"),
              ("POST", "/system/scale-function/echo"), ("GET", "/system/secrets"), ("POST", "/system/secrets"),
              ("PUT", "/system/secrets"), ("DELETE", "/system/secrets"), ("GET", "/system/logs?name=echo"),
              ("POST", "/system/alert")]  # fmt: skip
    for method, path in routes:
        r = requests.request(method, api.gateway_url + path, json={}, timeout=10)
        assert_error(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"] == 'Basic realm="Restricted"', path
        r = requests.request(method, api.gateway_url + path, json={}, auth=("admin", "wrong"), timeout=10)
        assert r.status_code == 401, path


def test_name_dot_namespace_routes(faas, api):
    r = requests.post(f"{api.gateway_url}/function/echo.openfaas-fn?mark=ns", timeout=10)
    assert r.status_code == 200 and r.json()["code"] == "echo"
    assert_error(requests.post(f"{api.gateway_url}/function/echo.other", timeout=10), 404, "namespace_not_found")
    assert_error(requests.post(f"{api.gateway_url}/async-function/echo.other", timeout=10), 404, "namespace_not_found")
    assert_error(requests.post(f"{api.gateway_url}/function/nope.openfaas-fn", timeout=10), 404, "function_not_found")
    assert_error(faas("GET", "/system/functions?namespace=other"), 404, "namespace_not_found")
    assert_error(faas("GET", "/system/function/echo?namespace=other"), 404, "namespace_not_found")
    assert faas("GET", "/system/function/echo?namespace=openfaas-fn").json()["namespace"] == "openfaas-fn"
    assert_error(faas("GET", "/system/secrets?namespace=other"), 404, "namespace_not_found")
    assert_error(faas("GET", "/system/logs?name=echo&namespace=other"), 404, "namespace_not_found")


def test_scale_min_label_is_honoured_at_start(faas):
    functions = {f["name"]: f for f in faas("GET", "/system/functions").json()}  # faas-cli list
    assert (functions["pair"]["replicas"], functions["pair"]["availableReplicas"]) == (2, 2)
    assert (functions["echo"]["replicas"], functions["echo"]["availableReplicas"]) == (1, 1)


def hostnames(url, n, mark="") -> list[str]:
    return [requests.post(f"{url}/function/echo?mark={mark}", timeout=10).json()["hostname"] for _ in range(n)]


def test_scale_to_two_replicas_that_both_serve(faas, api):
    # faas-cli scale (proxy/scale.go): types.ScaleServiceRequest to /system/scale-function/<name>
    r = faas("POST", "/system/scale-function/echo", {"serviceName": "echo", "replicas": 2, "namespace": "openfaas-fn"})
    assert r.status_code == 202, r.text
    status = faas("GET", "/system/function/echo").json()
    assert (status["replicas"], status["availableReplicas"]) == (2, 2)
    scrape = requests.get(f"{api.gateway_url}/metrics", timeout=10).text  # as OpenFaaS's exporter counts them
    assert 'gateway_service_count{function_name="echo.openfaas-fn"} 2.0' in scrape
    recorded = read_state(api.settings.state_dir)["functions"]["echo"]  # what `sai status` shows
    assert (recorded["replicas"], recorded["available_replicas"]) == (2, 2) and recorded["url"].endswith(
        f":{api.functions['echo'].port}"
    )
    pids = {r.record["pid"] for r in api.functions["echo"].replicas}
    assert len(pids) == 2 and all(os.path.exists(f"/proc/{p}") for p in pids)
    served = hostnames(api.gateway_url, 20, mark="spread")
    assert served.count("echo-0") == served.count("echo-1") == 10  # round robin
    # the spread as the logs show it: each replica logged its own half
    lines = [json.loads(x) for x in faas("GET", "/system/logs?name=echo&follow=false").text.splitlines()]
    spread = [m["instance"] for m in lines if "mark=spread" in m["text"]]
    assert spread.count("echo-0") == spread.count("echo-1") == 10
    # a replica that dies is restarted by the supervisor, the other serves meanwhile
    victim = api.functions["echo"].replicas[1].process
    victim.kill()
    victim.wait()
    assert set(hostnames(api.gateway_url, 4)) == {"echo-0"}
    deadline = time.monotonic() + 15
    while faas("GET", "/system/function/echo").json()["availableReplicas"] != 2 and time.monotonic() < deadline:
        api.supervise_once()
        time.sleep(0.2)
    assert faas("GET", "/system/function/echo").json()["availableReplicas"] == 2
    # CE's gateway clamps to 1..5 (gateway/scaling/ranges.go); back to one
    assert faas("POST", "/system/scale-function/echo", {"serviceName": "echo", "replicas": 0}).status_code == 202
    assert faas("GET", "/system/function/echo").json()["replicas"] == 1
    assert set(hostnames(api.gateway_url, 3)) == {"echo-0"}
    assert_error(faas("POST", "/system/scale-function/nope", {"serviceName": "nope", "replicas": 1}), 404)
    assert_error(faas("POST", "/system/scale-function/echo", {"replicas": "two"}), 400)


def test_alert_scales_up_within_max_and_back(faas):
    def alert(status):
        labels = {"alertname": "APIHighInvocationRate", "function_name": "echo"}
        body = {"receiver": "scale-up", "status": status, "alerts": [{"status": status, "labels": labels}]}
        assert faas("POST", "/system/alert", body).status_code == 200

    for want in (2, 3, 3):  # step ceil(3 * 10%) = 1, up to com.openfaas.scale.max 3
        alert("firing")
        assert faas("GET", "/system/function/echo").json()["availableReplicas"] == want
    alert("resolved")
    assert faas("GET", "/system/function/echo").json()["replicas"] == 1


def test_deploy_update_remove(faas, api):
    url = api.gateway_url
    # faas-cli deploy: PUT first (update), POST when that is 404 (proxy/deploy.go DeployFunction)
    body = deployment("greeter", "localhost:5001/echo:0.1.0", envVars={"GREETING": "hi"}, labels={"team": "a"})
    assert_error(faas("PUT", "/system/functions", body), 404, "function_not_found")
    assert faas("POST", "/system/functions", body).status_code == 202
    r = requests.post(f"{url}/function/greeter", timeout=10)
    assert r.status_code == 200 and r.json()["greeting"] == "hi"
    pid = r.json()["pid"]
    status = faas("GET", "/system/function/greeter").json()  # faas-cli describe
    assert status["image"] == "localhost:5001/echo:0.1.0" and status["labels"] == {"team": "a"}
    assert status["envVars"]["GREETING"] == "hi" and status["availableReplicas"] == 1
    assert_error(faas("POST", "/system/functions", body), 400, "function_exists")
    # update restarts it with the new settings, the gateway's in-flight limit included
    assert api.gateway.admission("greeter").max_inflight == 0
    body["envVars"]["GREETING"] = "hello"
    body["envVars"]["max_inflight"] = "3"
    body["annotations"] = {"topic": "x"}
    assert faas("PUT", "/system/functions", body).status_code == 200
    r = requests.post(f"{url}/function/greeter", timeout=10)
    assert r.json()["greeting"] == "hello" and r.json()["pid"] != pid
    assert api.gateway.admission("greeter").max_inflight == 3
    assert faas("GET", "/system/function/greeter").json()["annotations"] == {"topic": "x"}
    # `sai reload` keeps what the API deployed (stack.yml does not name it)
    report = api.reload()
    assert "greeter" not in report["functions"]["stopped"] + report["functions"]["restarted"], report
    assert requests.post(f"{url}/function/greeter", timeout=10).json()["pid"] == r.json()["pid"]
    # a folder of the checkout that stack.yml does not name, by its image
    assert faas("POST", "/system/functions", deployment("other2", "ghcr.io/me/other:latest")).status_code == 202
    assert requests.get(f"{url}/function/other2", timeout=10).json()["code"] == "other"
    # an image of no function folder: 400 that says so
    r = faas("POST", "/system/functions", deployment("web", "nginx:1.27"))
    assert_error(r, 400, "unknown_image")
    assert "matches no function folder" in r.json()["error"]["message"]
    assert_error(faas("POST", "/system/functions", deployment("Bad_Name", "echo")), 400, "invalid_deployment")
    assert_error(faas("POST", "/system/functions", {"service": "x"}), 400)
    assert_error(faas("POST", "/system/functions", deployment("x", "echo", namespace="other")), 400)
    # faas-cli remove (proxy/delete.go): types.DeleteFunctionRequest
    for name in ("greeter", "other2"):
        assert faas("DELETE", "/system/functions", {"functionName": name, "namespace": "openfaas-fn"}).status_code == 200
    assert {"greeter", "other2"}.isdisjoint(f["name"] for f in faas("GET", "/system/functions").json())
    assert_error(requests.post(f"{url}/function/greeter", timeout=10), 404, "function_not_found")
    assert_error(faas("DELETE", "/system/functions", {"functionName": "greeter"}), 404)


def test_secret_store_and_a_function_that_reads_it(faas, api):
    value = "s3cr3t-" + str(time.time_ns())
    # faas-cli secret create / list / update / remove (proxy/secret.go): types.Secret
    assert faas("POST", "/system/secrets", {"name": "api-key", "value": value}).status_code == 201
    assert_error(faas("POST", "/system/secrets", {"name": "api-key", "value": value}), 400, "secret_exists")
    assert_error(faas("POST", "/system/secrets", {"name": "../escape", "value": "x"}), 400, "invalid_secret_name")
    listed = faas("GET", "/system/secrets")
    assert listed.json() == [{"name": "api-key", "namespace": "openfaas-fn"}] and value not in listed.text
    stored = api.settings.state_dir / "secret-store" / "api-key"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert_error(faas("POST", "/system/functions", deployment("vault", "echo", secrets=["nope"])), 400, "secret_not_found")
    assert faas("POST", "/system/functions", deployment("vault", "echo", secrets=["api-key"])).status_code == 202
    r = requests.get(f"{api.gateway_url}/function/vault?secret=api-key", timeout=10)
    assert r.status_code == 200 and r.text == value
    # rawValue is base64 (Go's []byte); the function sees an update after its next (re)deploy
    assert faas("PUT", "/system/secrets", {"name": "api-key", "rawValue": "bmV3"}).status_code == 200
    assert faas("PUT", "/system/functions", deployment("vault", "echo", secrets=["api-key"])).status_code == 200
    assert requests.get(f"{api.gateway_url}/function/vault?secret=api-key", timeout=10).text == "new"
    assert_error(faas("PUT", "/system/secrets", {"name": "missing", "value": "x"}), 404, "secret_not_found")
    assert faas("DELETE", "/system/secrets", {"name": "api-key"}).status_code == 204
    assert_error(faas("DELETE", "/system/secrets", {"name": "api-key"}), 404, "secret_not_found")
    assert faas("GET", "/system/secrets").json() == []
    # never in a log
    logs = "".join(p.read_text(errors="replace") for p in api.logs.glob("*.log"))
    assert value not in logs
    faas("DELETE", "/system/functions", {"functionName": "vault"})


def test_logs_tail_since_and_follow(faas, api):
    url = api.gateway_url
    hostnames(url, 3, mark="before")
    # faas-cli logs (proxy/logs.go reqAsQueryValues): name, follow, since (RFC 3339), tail
    r = faas("GET", "/system/logs?name=echo&follow=false&tail=2")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert len(lines) == 2 and all(m["text"].endswith("mark=before") for m in lines)
    for m in lines:
        assert set(m) == {"name", "namespace", "instance", "timestamp", "text"} and m["instance"] == "echo-0"
        dt.datetime.fromisoformat(m["timestamp"])
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert faas("GET", f"/system/logs?name=echo&follow=false&since={future}").text == ""
    assert_error(faas("GET", "/system/logs?name=nope"), 404, "function_not_found")
    assert_error(faas("GET", "/system/logs?name=echo&tail=x"), 400)
    # follow: lines written after the request arrive on the open stream
    seen, stream = [], faas("GET", "/system/logs?name=echo&follow=true&tail=1", stream=True)
    assert stream.status_code == 200

    def read():
        for line in stream.iter_lines():
            seen.append(json.loads(line))
            if "mark=followed" in seen[-1]["text"]:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)
    hostnames(url, 1, mark="followed")
    reader.join(10)
    stream.close()
    assert seen and "mark=followed" in seen[-1]["text"], seen


def test_a_followed_stream_ends_at_the_upstream_timeout(project, tmp_path):
    """The spec: `follow` streams "until the request timeout" (here the gateway's upstream timeout)."""
    platform = start_platform(project, tmp_path, upstream_timeout_s=2)
    try:
        start = time.monotonic()
        r = Client(platform)("GET", "/system/logs?name=echo&follow=true")
        assert r.status_code == 200 and 2 <= time.monotonic() - start < 10
    finally:
        platform.stop()


def test_deployments_survive_a_restart(project, tmp_path):
    platform = start_platform(project, tmp_path)
    try:
        faas = Client(platform)
        assert faas("POST", "/system/functions", deployment("kept", "echo:1", envVars={"GREETING": "again"})).status_code == 202
        assert faas("POST", "/system/scale-function/kept", {"serviceName": "kept", "replicas": 2}).status_code == 202
        assert faas("DELETE", "/system/functions", {"functionName": "pair"}).status_code == 200
    finally:
        platform.stop()
    platform = start_platform(project, tmp_path)  # `sai down`, `sai up`
    try:
        functions = {f["name"]: f for f in Client(platform)("GET", "/system/functions").json()}
        assert set(functions) == {"echo", "kept"}
        assert functions["kept"]["availableReplicas"] == 2
        assert requests.post(f"{platform.gateway_url}/function/kept", timeout=10).json()["greeting"] == "again"
    finally:
        platform.stop()

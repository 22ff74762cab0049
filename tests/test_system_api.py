"""The OpenFaaS /system/* API on the local platform, over HTTP against a real platform
(gateway + function processes; no Triton needed by these functions), with the exact requests
faas-cli sends (openfaas/faas-cli proxy/: deploy.go, delete.go, scale.go, secret.go, logs.go,
version.go, namespaces.go) and faas-provider's types as bodies."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
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
    # 0 scales to zero now, as OpenFaaS Pro allows (CE refuses it); the next call wakes one replica
    assert faas("POST", "/system/scale-function/echo", {"serviceName": "echo", "replicas": 0}).status_code == 202
    assert faas("GET", "/system/function/echo").json()["replicas"] == 0
    assert not api.functions["echo"].replicas and not any(os.path.exists(f"/proc/{p}") for p in pids)
    assert set(hostnames(api.gateway_url, 3)) == {"echo-0"}
    assert faas("GET", "/system/function/echo").json()["replicas"] == 1
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
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
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


# -- what a second hostile probe of the API found (docs/reliability.md) --------------------------------


def inside(url, **kw) -> dict:
    """What the echo function saw of a call: its headers, its sys.path, any sitecustomize that ran."""
    r = requests.post(f"{url}/function/echo?inside=1", timeout=10, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_deploy_cannot_make_a_secret_into_code(faas, api):
    """A secret named sitecustomize.py and a deploy with PYTHONPATH on the secrets
    folder ran the secret as Python at the function's start. Each step is refused now."""
    code = "open('/tmp/pwned-by-secret', 'w').write('x')\n"
    for name in ("sitecustomize.py", "evil.pth", "libx.so", "libx.so.1", "mod.pyc"):
        r = faas("POST", "/system/secrets", {"name": name, "value": code})
        assert_error(r, 400, "invalid_secret_name")
    assert faas("POST", "/system/secrets", {"name": "sitecustomize", "value": code}).status_code == 201
    mounts = str(api.settings.state_dir / "function-secrets" / "vault2")
    for env in (
        {"PYTHONPATH": mounts},
        {"PYTHONSTARTUP": mounts + "/sitecustomize"},
        {"PYTHONHOME": mounts},
        {"PYTHONUSERBASE": mounts},
        {"PYTHONWARNINGS": "ignore::sitecustomize.X"},
        {"LD_PRELOAD": mounts + "/libx.so"},
        {"LD_LIBRARY_PATH": mounts},
        {"LD_AUDIT": mounts + "/libx.so"},
        {"GCONV_PATH": mounts},
        {"GLIBC_TUNABLES": "glibc.malloc.check=3"},
        {"MALLOC_TRACE": "/tmp/x"},
        {"OPENSSL_CONF": mounts + "/sitecustomize"},
        {"BAD=NAME": "x"},
    ):
        r = faas("POST", "/system/functions", deployment("vault2", "echo", secrets=["sitecustomize"], envVars=env))
        assert r.status_code == 400, (env, r.text)
    # every variable CPython documents (`python --help-env`) is refused, not only the ones tried above
    from sai.local.deployments import denied_env

    documented = subprocess.run([sys.executable, "--help-env"], capture_output=True, text=True, check=True).stdout
    names = sorted(set(re.findall(r"^(PYTHON[A-Z_]+)", documented, re.M)))
    assert len(names) > 20
    assert [n for n in names if not denied_env(n)] == []
    assert faas("GET", "/system/function/vault2").status_code == 404  # nothing was deployed
    # allowed: ordinary variables; the function imports from the checkout's build context only
    r = faas("POST", "/system/functions", deployment("vault2", "echo", secrets=["sitecustomize"], envVars={"TMPDIR": "/tmp"}))
    assert r.status_code == 202, r.text
    seen = requests.post(f"{api.gateway_url}/function/vault2?inside=1", timeout=10).json()
    assert not any(p.startswith(str(api.settings.state_dir / "function-secrets")) for p in seen["sys_path"])
    assert seen["sys_path"][0] == str(api.settings.state_dir / "build" / "vault2")
    assert "" not in seen["sys_path"] and os.getcwd() not in seen["sys_path"]  # -I: no working folder either
    faas("DELETE", "/system/functions", {"functionName": "vault2"})
    faas("DELETE", "/system/secrets", {"name": "sitecustomize"})


def test_the_interpreter_ignores_python_variables_from_anywhere(project, tmp_path):
    """Item 2, in depth: even a PYTHONPATH the API cannot set (the supervisor's own environment, a
    stack.yml entry) does not make a function import from a folder outside the checkout."""
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "sitecustomize.py").write_text("import os\nos.environ['PLANTED'] = '1'\n")
    env = {"PYTHONPATH": str(planted), "PYTHONSTARTUP": str(planted / "sitecustomize.py")}
    platform = start_platform(project, tmp_path / "state", function_env={"echo": env})
    try:
        seen = inside(platform.gateway_url)
        assert str(planted) not in seen["sys_path"]
        assert seen["sitecustomize"] is None or not seen["sitecustomize"].startswith(str(planted))
    finally:
        platform.stop()


def test_secret_size_and_mounted_copies(faas, api):
    """Items 13 and 10: a secret is at most 1 MiB (Kubernetes' limit), refused before its body is
    read whole; deleting a secret, or the function, removes the copies mounted for it."""
    big = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
    assert_error(faas("POST", "/system/secrets", {"name": "big", "rawValue": big}), 413, "secret_too_large")
    assert_error(faas("POST", "/system/secrets", {"name": "big", "value": "y" * (3 * 1024 * 1024)}), 413, "body_too_large")
    # a 31 MB body is answered from its Content-Length, without being read
    start = time.monotonic()
    r = requests.post(f"{api.gateway_url}/system/secrets", data=b"{" + b" " * 31_000_000 + b"}", auth=api.credentials, timeout=30)
    assert_error(r, 413, "body_too_large")
    assert time.monotonic() - start < 10

    def chunked():  # no Content-Length: refused once it passes the cap
        for _ in range(64):
            yield b" " * 65536

    assert_error(requests.put(f"{api.gateway_url}/system/secrets", data=chunked(), auth=api.credentials, timeout=30), 413)
    assert "big" not in [s["name"] for s in faas("GET", "/system/secrets").json()]
    exact = base64.b64encode(b"z" * 1024 * 1024).decode()
    assert faas("POST", "/system/secrets", {"name": "max", "rawValue": exact}).status_code == 201

    assert faas("POST", "/system/secrets", {"name": "token", "value": "t0ken"}).status_code == 201
    assert faas("POST", "/system/functions", deployment("holder", "echo", secrets=["token", "max"])).status_code == 202
    mount = api.settings.state_dir / "function-secrets" / "holder"
    assert (mount / "token").read_text() == "t0ken" and (mount / "max").stat().st_size == 1024 * 1024
    assert faas("DELETE", "/system/secrets", {"name": "token"}).status_code == 204
    assert not (mount / "token").exists() and (mount / "max").exists()
    assert faas("DELETE", "/system/functions", {"functionName": "holder"}).status_code == 200
    assert not mount.exists()
    faas("DELETE", "/system/secrets", {"name": "max"})


def test_non_ascii_credentials_are_refused_not_a_500(api):
    """Item 7: compare_digest raised TypeError on non-ASCII str: a 500 and a traceback per request."""
    token = base64.b64encode("ädmin:pässwörd".encode()).decode()
    for header in (f"Basic {token}", "Basic " + base64.b64encode("admin:\u00e9".encode()).decode()):
        r = requests.get(f"{api.gateway_url}/system/functions", headers={"Authorization": header}, timeout=10)
        assert_error(r, 401, "unauthorized")
    # raw non-ASCII bytes in the header itself
    host, port = api.gateway_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("GET", "/system/functions")
    conn.putheader("Authorization", b"Basic " + "äö:ü".encode())
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 401 and json.loads(resp.read())["error"]["code"] == "unauthorized"
    conn.close()


def test_functions_never_see_the_gateways_credentials(api):
    """Item 5, auth off for functions: the portal still sends the admin's basic auth on every call;
    it is stripped, as are cookies (browsers send every 127.0.0.1 app's) and Proxy-Authorization.
    An Authorization that is not the gateway's (the function's own token) passes."""
    headers = {"Cookie": "jupyter-token=abc", "Proxy-Authorization": "Basic eDp5", "X-Kept": "yes"}
    seen = inside(api.gateway_url, auth=api.credentials, headers=headers)["headers"]
    assert {k.lower() for k in seen}.isdisjoint({"authorization", "cookie", "proxy-authorization"}), seen
    assert seen["X-Kept"] == "yes"
    seen = inside(api.gateway_url, headers={"Authorization": "Bearer function-own-token"})["headers"]
    assert seen["Authorization"] == "Bearer function-own-token"


def test_auth_functions_strips_credentials_before_forwarding_and_storing(project, tmp_path, receiver):
    """Item 5 with --auth-functions: neither the function nor the async store gets the admin's
    credentials."""
    platform = start_platform(project, tmp_path, auth_functions=True)
    url, (user, password) = platform.gateway_url, platform.credentials
    try:
        assert_error(requests.post(f"{url}/function/echo", timeout=10), 401)
        seen = inside(url, auth=platform.credentials, headers={"Cookie": "a=b"})["headers"]
        assert {k.lower() for k in seen}.isdisjoint({"authorization", "cookie"}), seen
        r = requests.post(
            f"{url}/async-function/echo?inside=1", auth=platform.credentials, headers={"X-Callback-Url": receiver.url}, timeout=10
        )
        assert r.status_code == 202, r.text
        call = receiver.wait_for([r.headers["X-Call-Id"]])[r.headers["X-Call-Id"]][0]
        assert "authorization" not in {k.lower() for k in json.loads(call["body"])["headers"]}
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        with sqlite3.connect(tmp_path / "async-calls.sqlite") as db:
            stored = " ".join(row[0] for row in db.execute("SELECT headers FROM calls"))
        assert "X-Call-Id" in stored and token not in stored and password not in stored
    finally:
        platform.stop()


def test_only_known_host_names_are_served(api):
    """Item 16: a page of attacker.example whose name then resolves to 127.0.0.1 (DNS rebinding)
    sends its own name as Host: refused. IP literals, localhost and this machine's name are served
    (configured names: `sai up --allow-host`, tests/test_platform_cli.py)."""
    url, port = api.gateway_url, api.gateway_url.rsplit(":", 1)[1]
    for host in ("127.0.0.1", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST.", f"{socket.gethostname()}:{port}"):
        assert requests.get(f"{url}/healthz", headers={"Host": host}, timeout=10).status_code == 200, host
    for method, path in (("POST", "/function/echo"), ("GET", "/system/functions"), ("GET", "/ui/"), ("GET", "/healthz")):
        r = requests.request(method, url + path, headers={"Host": f"rebind.attacker.example:{port}"}, auth=api.credentials)
        assert_error(r, 400, "host_not_allowed")


def test_portal_refuses_framing(api):
    """Item 16: /ui/ may not be framed (clickjacking its try-it panel) and loads only its own files."""
    for path in ("/ui/", "/ui/static/portal.js"):
        r = requests.get(api.gateway_url + path, timeout=10)
        assert r.status_code == 200
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]


def test_what_an_older_version_stored_is_checked_again_at_start(project, tmp_path, caplog):
    """Items 2 and 10 across a restart: a deployment stored before the deny list (PYTHONPATH) is not
    started, and the mounted secrets of a function that no longer exists are removed."""
    stale = {"service": "old", "image": "echo", "secrets": [], "envVars": {"PYTHONPATH": "/tmp"}}
    (tmp_path / "deployments.json").write_text(json.dumps({"deployed": {"old": stale}, "removed": [], "replicas": {}}))
    ghost = tmp_path / "function-secrets" / "ghost"
    ghost.mkdir(parents=True)
    (ghost / "token").write_text("left behind")
    with caplog.at_level("ERROR", logger="sai.local.deployments"):
        platform = start_platform(project, tmp_path)
    try:
        assert "old" not in platform.functions and "echo" in platform.functions
        assert any(
            "deployed function old not started" in r.getMessage() and "PYTHONPATH" in r.getMessage() for r in caplog.records
        )
        assert not ghost.exists()
    finally:
        platform.stop()

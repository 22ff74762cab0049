"""The chart's Triton pod (kind profile) as a real container.

The image is built from k8s/images/triton-cpu (on a base made with debootstrap where no registry
answers, or $SAI_TRITON_BASE_IMAGE) and run with what the chart renders for that container:
KServe's pod is the ServingRuntime's container merged with the InferenceService's predictor.model
(kserve v0.20.0 pkg/controller/v1beta1/inferenceservice/utils/utils.go, strategic merge), and a
pvc:// storageUri is mounted read-only at /mnt/models with no init container (kserve v0.20.0
pkg/webhook/admission/pod/storage_initializer_injector.go, single storage URI). Its args, env
($(VAR) expanded as the kubelet does), securityContext, limits, the emptyDir (a tmpfs here) and its
port become `docker run` flags; nothing is published beyond 127.0.0.1.

Then the rendered startup, readiness and liveness probes are executed as the kubelet would, the
cat photo is classified through the HTTP port with tritonclient, and the restricted model-control
API is checked to refuse requests without the admin key. Needs Docker: skipped without it, failed
under CI=true (.ci/run installs and starts it).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import pytest
import tritonclient.http as httpclient
from helpers import ROOT, unavailable

from common.imaging import ImageSpec, decode, to_rgb
from sai.k8s.helm_kubectl import CHART_DIR, render_chart
from sai.state import free_port

BUILD = ROOT / "k8s/images/triton-cpu.sh"
NAME_PREFIX = "sai-test-triton-"  # containers this test starts (and removes)
ADMIN_KEY = secrets.token_hex(16)
CAT_CLASSES = {"tiger cat", "Egyptian cat", "tabby, tabby cat"}  # ImageNet 282, 285, 281


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion in args: defined names are replaced, $$ escapes a $."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), value)


def quantity(value: str) -> str:
    """A memory limit (Ki/Mi/Gi) as docker's --memory takes it."""
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", str(value)).groups()
    return number + {"Ki": "k", "Mi": "m", "Gi": "g", None: "b"}[unit]


@dataclass
class Pod:
    """The Triton container as KServe would run it, and how to run it with Docker."""

    container: dict
    volumes: dict  # pod volumes by name
    models_mount: str = "/mnt/models"  # where KServe mounts a pvc:// storageUri
    env: dict = field(default_factory=dict)

    @classmethod
    def from_chart(cls) -> Pod:
        objs = render_chart([CHART_DIR / "values-kind.yaml"])
        runtime = next(o for o in objs if o["kind"] == "ServingRuntime")["spec"]["containers"][0]
        predictor = next(o for o in objs if o["kind"] == "InferenceService")["spec"]["predictor"]
        assert predictor["model"]["storageUri"].startswith("pvc://"), "the kind profile mounts a claim"
        model = {
            k: v for k, v in predictor["model"].items() if k not in ("modelFormat", "runtime", "protocolVersion", "storageUri")
        }
        container = {**runtime, **model}  # the model's fields win, as in KServe's merge
        # The only env var is the admin key, from the chart's Secret; here a random one.
        assert [e["name"] for e in container["env"]] == ["TRITON_ADMIN_KEY"]
        return cls(container, {v["name"]: v for v in predictor.get("volumes", [])}, env={"TRITON_ADMIN_KEY": ADMIN_KEY})

    @property
    def image(self) -> str:
        return self.container["image"]

    @property
    def port(self) -> int:
        (port,) = [p["containerPort"] for p in self.container["ports"]]
        return port

    def run_args(self, name: str, host_port: int) -> list[str]:
        c, sc = self.container, self.container["securityContext"]
        args = ["run", "-d", "--name", name, "-p", f"127.0.0.1:{host_port}:{self.port}"]
        args += [f"--env={k}={v}" for k, v in self.env.items()]
        assert sc["runAsNonRoot"] and sc["runAsUser"] != 0
        args += ["--user", f"{sc['runAsUser']}:{sc['runAsGroup']}"]
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        args += [f"--cap-drop={cap}" for cap in sc["capabilities"]["drop"]]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"  # Docker's default profile
        limits = c["resources"]["limits"]
        args += ["--cpus", str(limits["cpu"]), "--memory", quantity(limits["memory"])]
        for mount in c.get("volumeMounts", []):
            assert "emptyDir" in self.volumes[mount["name"]], mount
            args += ["--tmpfs", mount["mountPath"]]
        args += ["-v", f"{ROOT / 'model_repository'}:{self.models_mount}:ro"]
        args += ["--pull", "never", self.image]
        return args + [expand(a, self.env) for a in c["args"]]


@dataclass
class Probe:
    """One rendered probe, executed as the kubelet does: every periodSeconds, an HTTP GET with
    timeoutSeconds (default 1); 200-399 succeeds; failureThreshold failures in a row fail it."""

    spec: dict
    host_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}{self.spec['httpGet']['path']}"

    def once(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=self.spec.get("timeoutSeconds", 1)) as resp:
                return 200 <= resp.status < 400
        except (urllib.error.URLError, OSError):
            return False

    def run(self) -> int | None:
        """The failures before the first success, or None after failureThreshold of them."""
        failures = 0
        while failures < self.spec.get("failureThreshold", 3):
            tick = time.monotonic()
            if self.once():
                return failures
            failures += 1
            time.sleep(max(0.0, self.spec.get("periodSeconds", 10) - (time.monotonic() - tick)))
        return None


def base_image_args() -> list[str]:
    base = os.environ.get("SAI_TRITON_BASE_IMAGE")
    return ["--base", base] if base else ["--debootstrap"]


@pytest.fixture(scope="module")
def pod():
    if shutil.which("docker") is None or docker("info", check=False, timeout=60).returncode != 0:
        unavailable("Docker is not running (as root: apt-get install docker.io; dockerd &)")
    pod = Pod.from_chart()
    started = time.monotonic()
    build = subprocess.run(
        ["bash", str(BUILD), "--tag", pod.image, *base_image_args()],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},  # its pip downloads the wheels
    )
    if build.returncode != 0:
        if "needs root" in build.stderr:
            unavailable(build.stderr.strip())
        pytest.fail(f"building {pod.image} failed:\n{build.stdout}\n{build.stderr}")
    print(f"\nbase + build of {pod.image}: {time.monotonic() - started:.1f}s ({build.stdout.strip().splitlines()[-1]})")
    return pod


@pytest.fixture(scope="module")
def triton(pod):
    """The container, started; yields (host port, seconds from `docker run` to the startup probe's
    success, whether it was ready at that moment, the startup probe's failures before it)."""
    name, host_port = NAME_PREFIX + secrets.token_hex(4), free_port()
    started = time.monotonic()
    docker(*pod.run_args(name, host_port))
    try:
        failures = Probe(pod.container["startupProbe"], host_port).run()
        cold_start = time.monotonic() - started
        ready_at_once = Probe(pod.container["readinessProbe"], host_port).once()
        logs = docker("logs", "--tail", "40", name, check=False).stderr
        assert failures is not None, f"the startup probe failed:\n{logs}"
        budget = pod.container["startupProbe"]["periodSeconds"] * pod.container["startupProbe"]["failureThreshold"]
        print(f"Triton container: startup probe succeeded {cold_start:.1f}s after docker run (budget {budget}s)")
        yield host_port, cold_start, ready_at_once, failures
    finally:
        docker("rm", "-f", name, check=False)


@pytest.mark.slow
def test_probes_pass_as_rendered(pod, triton):
    host_port, cold_start, ready_at_once, failures = triton
    c = pod.container
    assert {
        c["startupProbe"]["httpGet"]["port"],
        c["readinessProbe"]["httpGet"]["port"],
        c["livenessProbe"]["httpGet"]["port"],
    } == {pod.port}
    # Triton answers HTTP only once every model is loaded (server src/main.cc): the startup probe
    # failed while it loaded, and readiness held at the first moment it was live.
    assert failures >= 1 and ready_at_once, (failures, ready_at_once)
    assert Probe(c["readinessProbe"], host_port).run() == 0
    assert Probe(c["livenessProbe"], host_port).run() == 0
    # The start fits the startup budget with room for a slower machine (a CI runner, a busy node).
    budget = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
    assert cold_start < budget / 3, (cold_start, budget)


@pytest.mark.slow
def test_classifies_the_cat(triton, cat_jpeg):
    host_port = triton[0]
    client = httpclient.InferenceServerClient(f"127.0.0.1:{host_port}")
    # As image-classify does: preprocessing parameters from the model's config on the server.
    spec = ImageSpec(client.get_model_config("image_classifier"))
    tensor = spec.tensor(to_rgb(decode(cat_jpeg)))[None]
    inp = httpclient.InferInput(spec.input, list(tensor.shape), "UINT8")
    inp.set_data_from_numpy(tensor)
    out = httpclient.InferRequestedOutput("probabilities", class_count=3)
    result = client.infer("image_classifier", [inp], outputs=[out])
    top = [entry.decode().split(":", 2)[2] for entry in result.as_numpy("probabilities")[0]]
    assert top[0] in CAT_CLASSES and set(top) <= CAT_CLASSES, top


def admin(host_port: int, path: str, key: str | None) -> tuple[int, str]:
    headers = {"triton-admin-key": key} if key is not None else {}
    req = urllib.request.Request(f"http://127.0.0.1:{host_port}{path}", data=b"{}", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.slow
def test_model_control_needs_the_key(pod, triton):
    host_port = triton[0]
    ready = Probe(pod.container["readinessProbe"], host_port)
    for key in (None, "wrong-key"):
        status, text = admin(host_port, "/v2/repository/models/text_entities/unload", key)
        assert status == 403 and "triton-admin-key" in text, (key, status, text)
    assert ready.once(), "a refused unload changed nothing"
    status, text = admin(host_port, "/v2/repository/index", ADMIN_KEY)
    assert status == 200 and {m["name"] for m in json.loads(text) if m.get("state") == "READY"} >= {
        "image_classifier",
        "text_entities",
    }

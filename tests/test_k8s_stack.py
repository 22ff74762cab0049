"""Offline checks that tie the Kubernetes pieces together: stack.yml against functions/ and the
chart, the kustomize overlays, the kind config, the bootstrap script (dry run), the CI workflow
and `sai tools`."""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import time

import pytest
import yaml
from helpers import MODELS_BUCKET

from sai.cli import tools as k8s_tools
from sai.k8s.helm_kubectl import (
    CHART_DIR,
    KUBE_VERSION,
    REPO_ROOT,
    ManifestValidator,
    load_yaml_stream,
    render_chart,
    run_tool,
)
from sai.local.stack import envsubst

FUNCTIONS = ["image-classify", "text-sentiment", "text-embed", "text-keywords", "text-entities", "object-classify"]
# Values the OpenFaaS chart 15.0.6 defines that the bootstrap sets (openfaas/faas-netes 662ce9ce,
# chart/openfaas/values.yaml: functionNamespace l.4, generateBasicAuth l.27, serviceType l.33,
# gateway.{readTimeout,writeTimeout,upstreamTimeout} l.72-74, queueWorker.ackWait l.282; the kind
# profile's CPU requests: gateway l.95, faasnetes l.216, queueWorker l.286, prometheus l.407,
# nats l.452, alertmanager l.461). A --set of a key the chart does not have is silently ignored
# (as faasnetes.imagePullPolicy was).
OPENFAAS_CHART_VALUES = {
    "functionNamespace",
    "generateBasicAuth",
    "serviceType",
    "gateway.readTimeout",
    "gateway.writeTimeout",
    "gateway.upstreamTimeout",
    "queueWorker.ackWait",
    *(f"{c}.resources.requests.cpu" for c in ("gateway", "faasnetes", "queueWorker", "prometheus", "nats", "alertmanager")),
}
WATCHDOG = {"exec_timeout", "read_timeout", "write_timeout"}
WATCHDOG_READS = WATCHDOG | {"max_inflight"}  # of-watchdog's own settings (config/config.go)


@pytest.fixture(scope="module")
def stack():
    """stack.yml as faas-cli parses it with no variable set: the defaults apply."""
    return yaml.safe_load(envsubst((REPO_ROOT / "stack.yml").read_text(), env={}))


@pytest.fixture(scope="module")
def chart_functions():
    """The chart's Function resources for release serverless-ai, with its MinIO (the kind setup),
    pulling from the registry stack.yml pushes to by default."""
    objs = render_chart(
        [MODELS_BUCKET], sets=["minio.enabled=true", "functions.mode=openfaas", "functions.imageRegistry=localhost:5001"]
    )
    return {o["metadata"]["name"]: o["spec"] for o in objs if o["kind"] == "Function"}, objs


@pytest.fixture(scope="module")
def validator():
    return ManifestValidator()


@pytest.fixture(scope="module")
def chart_timeouts():
    objs = render_chart([MODELS_BUCKET])  # chart defaults: what stack.yml is written for
    data = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-timeouts"))["data"]
    return {k: int(v) for k, v in data.items() if k.endswith("Seconds")}


# ---- stack.yml ----------------------------------------------------------------------------------


def test_stack_lists_every_function(stack):
    fns = stack["functions"]
    assert sorted(fns) == sorted(FUNCTIONS)
    on_disk = sorted(p.name for p in (REPO_ROOT / "functions").iterdir() if (p / "handler.py").is_file())
    assert set(on_disk) <= set(fns), "a function folder missing from stack.yml"
    for name, f in fns.items():
        assert f["lang"] == "python3-http-debian", name
        assert f["handler"] == f"./functions/{name}", name
    templates = {t["name"]: t["source"] for t in stack["configuration"]["templates"]}
    assert templates["python3-http-debian"] == "https://github.com/openfaas/python-flask-template"
    assert stack["configuration"]["copy"] == ["./common"]


def test_stack_agrees_with_chart(stack, chart_functions):
    chart, _ = chart_functions
    assert sorted(chart) == sorted(stack["functions"])
    for name, f in stack["functions"].items():
        spec = chart[name]
        assert f["image"] == spec["image"], name
        assert f["environment"] == spec["environment"], name
        assert f.get("secrets", []) == spec["secrets"], name
        assert f.get("annotations", {}) == spec.get("annotations", {}), name  # the connectors read them
        assert f["requests"] == spec["requests"] and f["limits"] == spec["limits"], name
        assert f["readonly_root_filesystem"] is spec["readOnlyRootFilesystem"] is True
        scaling = {k: v for k, v in spec["labels"].items() if k.startswith("com.openfaas.scale.")}
        assert f["labels"] == scaling, name  # every scaling label, passed through as they are


def test_stack_timeouts_ordered(stack, chart_timeouts):
    """stack.yml carries the chart's derived numbers, and the bootstrap gives the gateway more."""
    cold, fn = chart_timeouts["tritonColdStartSeconds"], chart_timeouts["functionTimeoutSeconds"]
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "k8s/bootstrap.sh"), "--dry-run", "--profile", "kind"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    upstream = int(re.search(r"--set gateway\.upstreamTimeout=(\d+)s", out).group(1))
    server = int(re.search(r"--set gateway\.readTimeout=(\d+)s", out).group(1))
    ack = int(re.search(r"--set queueWorker\.ackWait=(\d+)s", out).group(1))
    assert ack == server >= upstream == chart_timeouts["gatewayTimeoutSeconds"]
    for name, f in stack["functions"].items():
        env = f["environment"]
        for key in WATCHDOG:
            assert int(env[key].rstrip("s")) == fn, (name, key)
        if name == "object-classify":  # answers MinIO's synchronous webhook within its 60 s
            assert int(env["TRITON_TIMEOUT_S"]) < 60
        else:
            assert int(env["TRITON_TIMEOUT_S"]) == cold
        assert upstream > fn > cold, name


def test_stack_images_come_from_a_registry_variable():
    """faas-netes CE always pulls and only deploys anonymously pullable images (deploy.go,
    validate.go), so the image prefix is the user's registry, not a name they cannot push to."""
    raw = yaml.safe_load((REPO_ROOT / "stack.yml").read_text())
    for name, f in raw["functions"].items():
        assert f["image"] == "${REGISTRY:-localhost:5001}/" + name + ":0.1.0", name
    assert "REGISTRY=" in (REPO_ROOT / "docs/kubernetes.md").read_text()


def test_object_classify_store_comes_from_the_environment():
    """object-classify writes results to the chart's MinIO unless S3_ENDPOINT/S3_REGION say
    otherwise when faas-cli runs (the GPU profile has no MinIO), as the registry comes from REGISTRY."""
    raw = yaml.safe_load((REPO_ROOT / "stack.yml").read_text())["functions"]["object-classify"]["environment"]
    assert raw["S3_ENDPOINT"] == "${S3_ENDPOINT:-http://serverless-ai-minio.serverless-ai.svc.cluster.local:9000}"
    assert raw["S3_REGION"] == "${S3_REGION:-us-east-1}"
    text = (REPO_ROOT / "stack.yml").read_text()
    env = {"S3_ENDPOINT": "https://s3.eu-west-1.amazonaws.com", "S3_REGION": "eu-west-1", "REGISTRY": "r.example.com/t"}
    fn = yaml.safe_load(envsubst(text, env))["functions"]["object-classify"]
    assert fn["environment"]["S3_ENDPOINT"] == "https://s3.eu-west-1.amazonaws.com"
    assert fn["environment"]["S3_REGION"] == "eu-west-1"
    assert fn["image"] == "r.example.com/t/object-classify:0.1.0"
    # drone/envsubst: an empty variable takes the default too
    assert yaml.safe_load(envsubst(text, {"S3_ENDPOINT": ""}))["functions"]["object-classify"]["environment"][
        "S3_ENDPOINT"
    ].startswith("http://serverless-ai-minio.")


def test_stack_env_is_read_by_the_code(stack):
    """No dead or misspelt settings: each variable is read somewhere in common/ or functions/."""
    code = "\n".join(p.read_text() for d in ("common", "functions") for p in (REPO_ROOT / d).rglob("*.py"))
    for name, f in stack["functions"].items():
        for key in set(f["environment"]) - WATCHDOG_READS:
            assert f'"{key}"' in code, f"{name}: {key} is never read"
    for secret in stack["functions"]["object-classify"]["secrets"]:
        assert f'"{secret}"' in code


def test_triton_url_matches_chart(stack, chart_functions):
    _, objs = chart_functions
    isvc = next(o for o in objs if o["kind"] == "InferenceService")
    expected = f"{isvc['metadata']['name']}-predictor.{isvc['metadata']['namespace']}.svc.cluster.local:80"
    assert {f["environment"]["TRITON_URL"] for f in stack["functions"].values()} == {expected}


# ---- k8s/ ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["kind", "gpu"])
def test_kustomize_overlays_render_and_validate(overlay, validator):
    objs = load_yaml_stream(run_tool("kubectl", "kustomize", str(REPO_ROOT / "k8s/overlays" / overlay)).stdout)
    problems = [e for o in objs for e in validator.errors(o)]
    assert not problems, problems
    cms = {o["metadata"]["name"]: o["data"] for o in objs if o["kind"] == "ConfigMap"}
    assert cms["config-autoscaler"]["enable-scale-to-zero"] == "true"
    # values-gpu.yaml starts Triton at zero replicas: Knative must allow it.
    gpu_values = yaml.safe_load((CHART_DIR / "values-gpu.yaml").read_text())
    if gpu_values["triton"]["initialScale"] == 0:
        assert cms["config-autoscaler"]["allow-zero-initial-scale"] == "true"
    # Every profile's revision timeouts fit under Knative's maximum.
    limit = int(cms["config-defaults"]["max-revision-timeout-seconds"])
    for profile in ("values-gpu.yaml", "values-kind.yaml", "values-knative.yaml"):
        t = (
            yaml.safe_load((CHART_DIR / profile).read_text()).get("timeouts")
            or yaml.safe_load((CHART_DIR / "values.yaml").read_text())["timeouts"]
        )
        assert t["tritonColdStartSeconds"] + 2 * t["marginSeconds"] <= limit, profile
    features = cms["config-features"]
    for flag in (
        "kubernetes.podspec-nodeselector",
        "kubernetes.podspec-tolerations",
        "kubernetes.podspec-runtimeclassname",
        "kubernetes.podspec-persistent-volume-claim",
        "kubernetes.podspec-volumes-emptydir",
    ):
        assert features[flag] == "enabled", flag
    # The chart sets users per container, so the broader pod securityContext flag stays off.
    assert "kubernetes.podspec-securitycontext" not in features
    # Knative resolves tags from its controller: not for the kind registry, nor the pre-loaded Triton.
    skip = cms["config-deployment"]["registries-skipping-tag-resolving"].split(",")
    assert {"localhost:5001", "kind-registry.local:5000", "nvcr.io", "kind.local"} <= set(skip)
    namespaces = {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"}
    assert {"serverless-ai", "openfaas", "openfaas-fn"} <= namespaces
    assert "kserve" in namespaces, "kserve.yaml ships without its Namespace (generate-install.sh)"


def test_kind_cluster_wiring():
    cluster = yaml.safe_load((REPO_ROOT / "k8s/kind/cluster.yaml").read_text())
    node = cluster["nodes"][0]
    minor = ".".join(KUBE_VERSION.split(".")[:2])
    assert node["image"].startswith(f"kindest/node:v{minor}."), "validate for the version kind runs"
    # The gateway NodePort is published where faas-cli and the e2e script expect it.
    # ... and on the host's loopback only: the gateway is not published to the network.
    assert {"containerPort": 31112, "hostPort": 8080, "listenAddress": "127.0.0.1", "protocol": "TCP"} in node[
        "extraPortMappings"
    ]
    assert 'GATEWAY="http://127.0.0.1:8080"' in (REPO_ROOT / "k8s/e2e-kind.sh").read_text()
    # The host's model_repository reaches Triton: kind mount -> hostPath PV -> PVC -> values-kind.
    mount = node["extraMounts"][0]
    assert mount["hostPath"] == "__REPO__/model_repository"
    pv_objs = yaml.safe_load_all((REPO_ROOT / "k8s/overlays/kind/models-volume.yaml").read_text())
    pv, pvc = list(pv_objs)
    assert pv["spec"]["hostPath"]["path"] == mount["containerPath"]
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    kind_values = yaml.safe_load((CHART_DIR / "values-kind.yaml").read_text())
    assert kind_values["modelRepository"]["pvc"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["metadata"]["namespace"] == "serverless-ai"
    # A local registry both ends can use: containerd reads certs.d hosts (the bootstrap writes
    # hosts.toml for both names), and stack.yml's default pushes to it.
    assert 'config_path = "/etc/containerd/certs.d"' in cluster["containerdConfigPatches"][0]
    bootstrap = (REPO_ROOT / "k8s/bootstrap.sh").read_text()
    assert 'KIND_PUSH_REGISTRY="localhost:5001"' in bootstrap and 'KIND_CLUSTER_REGISTRY="kind-registry.local:5000"' in bootstrap
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "k8s/bootstrap.sh"), "--dry-run", "--profile", "kind"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "-p 127.0.0.1:5001:5000" in out
    for host in ("localhost:5001", "kind-registry.local:5000"):
        assert f"/etc/containerd/certs.d/{host}/hosts.toml -> http://kind-registry.local:5000" in out
    assert "docker network connect --alias kind-registry.local kind kind-registry" in out
    # The CPU Triton is built from this repository and loaded before the chart is installed; the
    # ~15 GB NGC image is never pulled on the kind runner (docs/kubernetes.md, the kind job's budget).
    build = out.index("k8s/images/triton-cpu.sh --tag kind.local/serverless-ai/tritonserver-cpu:")
    load = out.index("kind load docker-image kind.local/serverless-ai/tritonserver-cpu:")
    assert build < load < out.index("helm upgrade --install serverless-ai")
    assert "nvcr.io" not in out and "docker pull" not in out


def test_bootstrap_dry_run_pins_versions():
    script = REPO_ROOT / "k8s/bootstrap.sh"
    help_text = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, check=True).stdout
    assert "--profile" in help_text
    for profile in ("kind", "gpu", "knative"):
        out = subprocess.run(
            ["bash", str(script), "--dry-run", "--profile", profile, "--values", str(MODELS_BUCKET)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        urls = re.findall(r"https://\S+", out)
        assert urls, profile
        for url in urls:
            assert "latest" not in url and "/master/" not in url and "/main/" not in url, url
        assert "--version 15.0.6" in out  # OpenFaaS chart pinned (faas-netes 0.18.17)
        assert "faasnetes.imagePullPolicy" not in out
        openfaas = next(line for line in out.splitlines() if line.startswith("+ helm upgrade --install openfaas "))
        sets = set(re.findall(r"--set ([\w.]+)=", openfaas))
        assert sets <= OPENFAAS_CHART_VALUES, sets - OPENFAAS_CHART_VALUES
        service_type = re.search(r"--set serviceType=(\w+)", out).group(1)
        assert service_type == ("NodePort" if profile == "kind" else "ClusterIP"), profile
        assert f"charts/serverless-ai/values-{profile}.yaml" in out
        assert ("kserve" in out) == (profile != "knative"), "KServe is skipped only without it"
    bad = subprocess.run(["bash", str(script), "--profile", "nope", "--dry-run"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2


def crd_sources() -> dict[str, tuple[str, str, str]]:
    """k8s/fetch-crds.sh's table: file name -> (repository, tag, sha256)."""
    script = (REPO_ROOT / "k8s/fetch-crds.sh").read_text()
    rows = re.findall(r"^([\w.-]+\.yaml)\|([\w/-]+)\|([\w.-]+)\|[\w./-]+\|([0-9a-f]{64})$", script, re.MULTILINE)
    return {name: (repo, ref, digest) for name, repo, ref, digest in rows}


def test_fetch_crds_refs_are_tags_or_full_commits():
    """A short SHA can become ambiguous as a repository grows (GitHub then answers 404 or another
    object): every ref is a release tag or a full 40-digit commit."""
    refs = {ref for _, ref, _ in crd_sources().values()}
    assert len(crd_sources()) == 11
    for ref in refs:
        assert re.fullmatch(r"v?\d+\.\d+\.\d+|knative-v\d+\.\d+\.\d+|[0-9a-f]{40}", ref), ref


def test_fetch_crds_matches_the_crds_in_use():
    """The CRDs the chart is validated against are byte for byte the ones of the listed tags."""
    sources = crd_sources()
    assert sorted(sources) == sorted(p.name for p in k8s_tools.crds_dir().glob("*.yaml"))
    for name, (_, _, digest) in sources.items():
        assert hashlib.sha256((k8s_tools.crds_dir() / name).read_bytes()).hexdigest() == digest, name


def test_install_pins_equal_the_validated_versions():
    """What k8s/bootstrap.sh installs is what the CRDs came from: validation speaks about the install."""
    bootstrap = (REPO_ROOT / "k8s/bootstrap.sh").read_text()
    pins = dict(re.findall(r'^([A-Z_]+_VERSION)="([^"]+)"', bootstrap, re.MULTILINE))
    tags = {repo: ref for repo, ref, _ in crd_sources().values()}
    assert tags["kserve/kserve"] == pins["KSERVE_VERSION"] == "v0.20.0"
    assert tags["knative/serving"] == pins["KNATIVE_VERSION"] == "knative-v1.23.0"
    # OpenFaaS chart 15.0.6 deploys faas-netes 0.18.17 (chart/openfaas/values.yaml at 662ce9ce).
    assert (pins["OPENFAAS_CHART_VERSION"], tags["openfaas/faas-netes"]) == ("15.0.6", "0.18.17")
    # Knative 1.23 refuses Kubernetes < 1.34 (knative.dev/pkg version.go): kind's node, the chart's
    # kubeVersion and the schemas the tests validate against follow.
    node = yaml.safe_load((REPO_ROOT / "k8s/kind/cluster.yaml").read_text())["nodes"][0]["image"]
    assert node.startswith("kindest/node:v1.34.") and "@sha256:" in node
    assert pins["KIND_VERSION"] == "v0.30.0"  # whose default node image is v1.34.0
    assert KUBE_VERSION.startswith("1.34.")
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.34.0-0"
    triton = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["triton"]["image"]
    assert f'TRITON_IMAGE="{triton["repository"]}:{triton["tag"]}"' in bootstrap, "the GPU profile's image"
    kind = yaml.safe_load((CHART_DIR / "values-kind.yaml").read_text())["triton"]["image"]
    assert f'KIND_TRITON_IMAGE="{kind["repository"]}:{kind["tag"]}"' in bootstrap, "kind loads the image the chart runs"


def test_ci_workflow():
    wf = yaml.safe_load((REPO_ROOT / ".github/workflows/ci.yml").read_text())
    jobs = wf["jobs"]
    test_steps = " ".join(s.get("run", "") for s in jobs["test"]["steps"])
    assert "make test" in test_steps and "k8s/fetch-crds.sh" in test_steps
    e2e = jobs["e2e-kind"]
    assert e2e["needs"] == "test"
    e2e_steps = " ".join(s.get("run", "") for s in e2e["steps"])
    assert "k8s/bootstrap.sh --profile kind" in e2e_steps and "k8s/e2e-kind.sh" in e2e_steps
    # The disk is made and checked first, before anything is installed, pulled or built
    # (tests/test_k8s_stack.py::test_kind_disk_script has what it does).
    steps = e2e["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@") and steps[1]["run"] == ".ci/kind-disk.sh"
    assert e2e["timeout-minutes"] <= 45
    # The test job's container test builds on a pulled base; without a registry it uses debootstrap.
    assert jobs["test"]["env"]["SAI_TRITON_BASE_IMAGE"].startswith("debian:bookworm")
    bootstrap = (REPO_ROOT / "k8s/bootstrap.sh").read_text()
    assert f'KIND_VERSION="{e2e["env"]["KIND_VERSION"]}"' in bootstrap
    e2e_script = (REPO_ROOT / "k8s/e2e-kind.sh").read_text()
    assert "/function/image-classify" in e2e_script
    # CE pulls every function image (no `kind load`): build, push to the host-side name, deploy the
    # in-cluster name; then prove scale to zero and time the wake-up.
    assert "kind load" not in e2e_script
    assert 'REGISTRY="$PUSH_REGISTRY" faas-cli push -f stack.yml' in e2e_script
    assert 'REGISTRY="$CLUSTER_REGISTRY" faas-cli deploy -f stack.yml' in e2e_script
    assert "Triton scaled to zero after" in e2e_script and "cold start: the request that woke Triton" in e2e_script
    # .ci/run (a clean machine, as root) installs and starts what the container test needs.
    ci_run = (REPO_ROOT / ".ci/run").read_text()
    assert "docker.io" in ci_run and "debootstrap" in ci_run and "nohup dockerd" in ci_run
    for path in (
        "k8s/bootstrap.sh",
        "k8s/e2e-kind.sh",
        "k8s/fetch-crds.sh",
        "k8s/images/triton-cpu.sh",
        ".ci/run",
        ".ci/kind-disk.sh",
    ):
        subprocess.run(["bash", "-n", str(REPO_ROOT / path)], check=True)


# ---- sai tools ----------------------------------------------------------------------------------


def test_kind_disk_script():
    """Hosted runners went from a small root plus a large /mnt to one disk (72 or 145 GB, reported):
    the kind job frees the preinstalled SDKs, keeps Docker's images where data-root says (classic
    store, overlay2), and stops at once with the numbers when the space is not there."""
    script = REPO_ROOT / ".ci/kind-disk.sh"
    text = script.read_text()
    for sdk in ("/usr/share/dotnet", "/usr/local/lib/android", "/opt/ghc", "/opt/hostedtoolcache/CodeQL"):
        assert f" {sdk}" in text.split("sudo rm -rf", 1)[1].splitlines()[0], sdk
    assert '.features."containerd-snapshotter" = false' in text and '[ "$driver" = overlay2 ]' in text
    assert 'stat -c %d /mnt)" != "$(stat -c %d /)"' in text, "/mnt only when it is a separate filesystem"
    assert "check 15 /;" in text, "one disk: the whole peak (~12 GB) plus a margin"
    short = subprocess.run(["bash", str(script), "--check", "1000000", "/"], capture_output=True, text=True)
    assert short.returncode == 1 and "not enough disk for the kind job" in short.stderr and "GB free for /" in short.stderr
    ok = subprocess.run(["bash", str(script), "--check", "0", "/", "/tmp"], capture_output=True, text=True)
    assert ok.returncode == 0 and "free for /tmp:" in ok.stdout
    assert subprocess.run(["bash", str(script), "--check"], capture_output=True).returncode == 2


def test_tools_installed_and_idempotent():
    start = time.perf_counter()
    paths = k8s_tools.install()
    assert time.perf_counter() - start < 0.5, "a second install must be a no-op"
    assert paths["helm"] == k8s_tools.tool_path("helm")
    assert "v3.19" in run_tool("helm", "version", "--short").stdout
    assert "v1.34" in run_tool("kubectl", "version", "--client").stdout


def test_tools_cli(capsys):
    parser = argparse.ArgumentParser()
    k8s_tools.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["tools", "path", "helm"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(k8s_tools.tool_path("helm"))
    args = parser.parse_args(["tools", "validate", "-f", str(CHART_DIR / "values-kind.yaml")])
    assert args.func(args) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    with pytest.raises(SystemExit):
        parser.parse_args(["tools", "path", "terraform"])

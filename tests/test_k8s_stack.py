"""Offline checks that tie the Kubernetes pieces together: stack.yml against functions/ and the
chart, the kustomize overlays, the kind config, the bootstrap script (dry run), the CI workflow
and `sai tools`."""

from __future__ import annotations

import argparse
import re
import subprocess
import time

import pytest
import yaml

from sai.cli import tools as k8s_tools
from sai.k8s.tools import (
    CHART_DIR,
    KUBE_VERSION,
    REPO_ROOT,
    ManifestValidator,
    load_yaml_stream,
    render_chart,
    run_tool,
)

FUNCTIONS = ["image-classify", "text-sentiment", "text-embed", "text-keywords", "object-classify"]
WATCHDOG = {"exec_timeout", "read_timeout", "write_timeout"}


@pytest.fixture(scope="module")
def stack():
    return yaml.safe_load((REPO_ROOT / "stack.yml").read_text())


@pytest.fixture(scope="module")
def chart_functions():
    """The chart's Function resources for release serverless-ai, with its MinIO (the kind setup)."""
    objs = render_chart(sets=["minio.enabled=true"])
    return {o["metadata"]["name"]: o["spec"] for o in objs if o["kind"] == "Function"}, objs


@pytest.fixture(scope="module")
def validator():
    return ManifestValidator()


@pytest.fixture(scope="module")
def chart_timeouts():
    objs = render_chart()  # chart defaults: what stack.yml is written for
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
        assert f["requests"] == spec["requests"] and f["limits"] == spec["limits"], name
        assert f["readonly_root_filesystem"] is spec["readOnlyRootFilesystem"] is True
        for key in ("com.openfaas.scale.min", "com.openfaas.scale.max"):
            assert f["labels"][key] == spec["labels"][key], (name, key)
        assert int(f["labels"]["com.openfaas.scale.max"]) <= 5, "OpenFaaS CE allows at most 5 replicas"


def test_stack_timeouts_ordered(stack, chart_timeouts):
    """stack.yml carries the chart's derived numbers, and the bootstrap gives the gateway more."""
    cold, fn = chart_timeouts["tritonColdStartSeconds"], chart_timeouts["functionTimeoutSeconds"]
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "k8s/bootstrap.sh"), "--dry-run", "--profile", "kind"],
        capture_output=True, text=True, check=True,
    ).stdout
    upstream = int(re.search(r"--set gateway\.upstreamTimeout=(\d+)s", out).group(1))
    server = int(re.search(r"--set gateway\.readTimeout=(\d+)s", out).group(1))
    ack = int(re.search(r"--set queueWorker\.ackWait=(\d+)s", out).group(1))
    assert ack == server >= upstream == chart_timeouts["gatewayTimeoutSeconds"]
    for name, f in stack["functions"].items():
        env = f["environment"]
        for key in WATCHDOG:
            assert int(env[key].rstrip("s")) == fn, (name, key)
        assert int(env["TRITON_TIMEOUT_S"]) == cold
        assert upstream > fn > cold, name


def test_stack_env_is_read_by_the_code(stack):
    """No dead or misspelt settings: each variable is read somewhere in common/ or functions/."""
    code = "\n".join(p.read_text() for d in ("common", "functions") for p in (REPO_ROOT / d).rglob("*.py"))
    for name, f in stack["functions"].items():
        for key in set(f["environment"]) - WATCHDOG:
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
        t = yaml.safe_load((CHART_DIR / profile).read_text()).get("timeouts") or yaml.safe_load(
            (CHART_DIR / "values.yaml").read_text())["timeouts"]
        assert t["tritonColdStartSeconds"] + 2 * t["marginSeconds"] <= limit, profile
    features = cms["config-features"]
    for flag in ("kubernetes.podspec-nodeselector", "kubernetes.podspec-tolerations",
                 "kubernetes.podspec-runtimeclassname", "kubernetes.podspec-persistent-volume-claim",
                 "kubernetes.podspec-volumes-emptydir"):
        assert features[flag] == "enabled", flag
    namespaces = {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"}
    assert {"serverless-ai", "openfaas", "openfaas-fn"} <= namespaces


def test_kind_cluster_wiring():
    cluster = yaml.safe_load((REPO_ROOT / "k8s/kind/cluster.yaml").read_text())
    node = cluster["nodes"][0]
    minor = ".".join(KUBE_VERSION.split(".")[:2])
    assert node["image"].startswith(f"kindest/node:v{minor}."), "validate for the version kind runs"
    # The gateway NodePort is published where faas-cli and the e2e script expect it.
    assert {"containerPort": 31112, "hostPort": 8080, "protocol": "TCP"} in node["extraPortMappings"]
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


def test_bootstrap_dry_run_pins_versions():
    script = REPO_ROOT / "k8s/bootstrap.sh"
    help_text = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, check=True).stdout
    assert "--profile" in help_text
    for profile in ("kind", "gpu", "knative"):
        out = subprocess.run(["bash", str(script), "--dry-run", "--profile", profile],
                             capture_output=True, text=True, check=True).stdout
        urls = re.findall(r"https://\S+", out)
        assert urls, profile
        for url in urls:
            assert "latest" not in url and "/master/" not in url and "/main/" not in url, url
        assert "--version 14.2.124" in out  # OpenFaaS chart pinned
        assert f"charts/serverless-ai/values-{profile}.yaml" in out
        assert ("kserve" in out) == (profile != "knative"), "KServe is skipped only without it"
    bad = subprocess.run(["bash", str(script), "--profile", "nope", "--dry-run"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2


def test_fetch_crds_matches_the_crds_in_use():
    script = (REPO_ROOT / "k8s/fetch-crds.sh").read_text()
    listed = sorted(re.findall(r"^([\w.-]+\.yaml)\|", script, re.MULTILINE))
    assert listed == sorted(p.name for p in k8s_tools.crds_dir().glob("*.yaml"))


def test_ci_workflow():
    wf = yaml.safe_load((REPO_ROOT / ".github/workflows/ci.yml").read_text())
    jobs = wf["jobs"]
    test_steps = " ".join(s.get("run", "") for s in jobs["test"]["steps"])
    assert "make test" in test_steps and "k8s/fetch-crds.sh" in test_steps
    e2e = jobs["e2e-kind"]
    assert e2e["needs"] == "test"
    e2e_steps = " ".join(s.get("run", "") for s in e2e["steps"])
    assert "k8s/bootstrap.sh --profile kind" in e2e_steps and "k8s/e2e-kind.sh" in e2e_steps
    bootstrap = (REPO_ROOT / "k8s/bootstrap.sh").read_text()
    assert f'KIND_VERSION="{e2e["env"]["KIND_VERSION"]}"' in bootstrap
    e2e_script = (REPO_ROOT / "k8s/e2e-kind.sh").read_text()
    assert "/function/image-classify" in e2e_script and "faas-cli deploy -f stack.yml" in e2e_script
    for path in ("k8s/bootstrap.sh", "k8s/e2e-kind.sh", "k8s/fetch-crds.sh"):
        subprocess.run(["bash", "-n", str(REPO_ROOT / path)], check=True)


# ---- sai tools ----------------------------------------------------------------------------------


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

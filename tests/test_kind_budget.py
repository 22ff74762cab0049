"""The kind job's CPU budget: everything `k8s/bootstrap.sh --profile kind` and `k8s/e2e-kind.sh`
put on the single kind node must request under 75 % of a 4-vCPU GitHub runner, or pods stay
Pending (the scheduler places by requests, not use).

Summed: the chart rendered with values-kind.yaml (Triton and its queue-proxy per replica, MinIO,
its set-up Job), the kind overlay, the functions as faas-cli deploys them from stack.yml with
e2e-kind.sh's settings, and the controllers' own requests at the pinned versions (table below,
each number read in the upstream file named beside it), with the overrides the bootstrap's dry
run shows it applies. docs/kubernetes.md ("The kind job's budget") has the resulting table.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from sai.k8s.helm_kubectl import CHART_DIR, REPO_ROOT, load_yaml_stream, render_chart, run_tool
from sai.local.stack import envsubst

NODE_MILLICPU = 4000  # a GitHub-hosted ubuntu-24.04 runner for public repositories: 4 vCPU
SHARE = 0.75

# What the bootstrap installs on the node -> its pods' CPU requests (millicpu per replica, replicas),
# at the pinned versions. Keyed by the manifest or chart the dry run names, so a new install that
# this table lacks fails the test. (component, container-or-values-path, millicpu, replicas, source)
KUBEADM = "kubernetes v1.34 (kindest/node:v1.34.0, kind v0.30.0's default) cmd/kubeadm/app"
UPSTREAM = {
    "kind create cluster": [
        ("kube-apiserver", "", 250, 1, f"{KUBEADM}/phases/controlplane/manifests.go ComponentResources(250m)"),
        ("kube-controller-manager", "", 200, 1, f"{KUBEADM}/phases/controlplane/manifests.go ComponentResources(200m)"),
        ("kube-scheduler", "", 100, 1, f"{KUBEADM}/phases/controlplane/manifests.go ComponentResources(100m)"),
        ("etcd", "", 100, 1, f"{KUBEADM}/phases/etcd/local.go ComponentResources(100m)"),
        ("coredns", "", 100, 2, f"{KUBEADM}/phases/addons/dns/manifests.go (100m), constants.CoreDNSReplicas (2)"),
        ("kindnet", "", 100, 1, "kind v0.30.0 pkg/build/nodeimage/const_cni.go l.136"),
        ("local-path-provisioner, kube-proxy", "", 0, 1, "kind v0.30.0 const_storage.go; kubeadm kube-proxy: no requests"),
    ],
    "cert-manager.yaml": [
        (
            "cert-manager, cainjector, webhook",
            "",
            0,
            1,
            "cert-manager v1.17.0 deploy/charts/cert-manager/values.yaml: resources {}",
        ),
    ],
    "serving-crds.yaml": [],
    "serving-core.yaml": [
        (
            "knative-serving/activator",
            "activator",
            300,
            1,
            "serving knative-v1.23.0 config/core/deployments/activator.yaml l.60 (HPA min 1)",
        ),
        (
            "knative-serving/autoscaler",
            "autoscaler",
            100,
            1,
            "serving knative-v1.23.0 config/core/deployments/autoscaler.yaml l.61",
        ),
        (
            "knative-serving/controller",
            "controller",
            100,
            1,
            "serving knative-v1.23.0 config/core/deployments/controller.yaml l.56",
        ),
        (
            "knative-serving/webhook",
            "webhook",
            100,
            1,
            "serving knative-v1.23.0 config/core/deployments/webhook.yaml l.58 (HPA min 1)",
        ),
    ],
    "kourier.yaml": [
        (
            "kourier-system/3scale-kourier-gateway",
            "kourier-gateway",
            200,
            1,
            "net-kourier knative-v1.23.0 config/300-gateway.yaml l.123 (HPA min 1)",
        ),
        (
            "knative-serving/net-kourier-controller",
            "controller",
            200,
            1,
            "net-kourier knative-v1.23.0 config/300-controller.yaml l.99",
        ),
    ],
    "kserve.yaml": [
        (
            "kserve/kserve-controller-manager",
            "manager",
            100,
            1,
            "kserve v0.20.0 config/manager/manager.yaml l.71 (kube-rbac-proxy: none)",
        ),
        ("kserve/kserve-localmodel-controller-manager", "manager", 100, 1, "kserve v0.20.0 config/localmodels/manager.yaml l.65"),
        ("kserve/llmisvc-controller-manager", "manager", 100, 1, "kserve v0.20.0 config/llmisvc/manager.yaml l.76"),
        (
            "kserve/kserve-localmodelnode-agent",
            "",
            0,
            1,
            "kserve v0.20.0 config/localmodelnodes/manager.yaml: only on nodes labelled kserve/localmodel=worker",
        ),
    ],
    "kserve-crds.yaml": [],  # CRDs only
    "helm upgrade --install openfaas": [
        # openfaas/faas-netes 662ce9ce (chart 15.0.6) chart/openfaas/values.yaml; CE runs these six.
        ("openfaas/gateway", "gateway", 100, 1, "faas-netes 662ce9ce chart/openfaas/values.yaml l.95"),
        ("openfaas/gateway (faas-netes)", "faasnetes", 100, 1, "faas-netes 662ce9ce chart/openfaas/values.yaml l.216"),
        ("openfaas/queue-worker", "queueWorker", 50, 1, "faas-netes 662ce9ce chart/openfaas/values.yaml l.286"),
        ("openfaas/prometheus", "prometheus", 100, 1, "faas-netes 662ce9ce chart/openfaas/values.yaml l.407"),
        ("openfaas/nats", "nats", 100, 1, "faas-netes 662ce9ce chart/openfaas/values.yaml l.452"),
        ("openfaas/alertmanager", "alertmanager", 50, 1, "faas-netes 662ce9ce chart/openfaas/values.yaml l.461"),
    ],
}
# Knative's queue-proxy sidecar beside each Triton replica, unless config-deployment sets it
# (serving knative-v1.23.0 config/core/configmaps/deployment.yaml l.57, pkg/deployment/config.go).
QUEUE_PROXY_DEFAULT = "25m"


def millicpu(quantity) -> int:
    q = str(quantity)
    return int(q[:-1]) if q.endswith("m") else round(float(q) * 1000)


def dry_run() -> str:
    return subprocess.run(
        ["bash", str(REPO_ROOT / "k8s/bootstrap.sh"), "--dry-run", "--profile", "kind"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def controllers(out: str) -> list[tuple[str, int, str]]:
    """(component, millicpu in all, source) for what the dry run installs, with its overrides."""
    installs = [
        line
        for line in out.splitlines()
        if re.match(
            r"\+ (kind create cluster|kubectl apply .*-f https://|curl .*\| kubectl apply |helm upgrade --install openfaas )",
            line,
        )
    ]
    covered = [key for key in UPSTREAM if any(key in line for line in installs)]
    missing = [line for line in installs if not any(key in line for key in UPSTREAM)]
    assert not missing, f"installed on the kind node but not in the budget table: {missing}"
    patched = {  # kubectl -n NS set resources deployment/NAME -c CONTAINER --requests=cpu=X
        (f"{ns}/{name}", container): millicpu(cpu)
        for ns, name, container, cpu in re.findall(
            r"kubectl -n (\S+) set resources deployment/(\S+) -c (\S+) --requests=cpu=(\S+)", out
        )
    }
    openfaas = next(line for line in out.splitlines() if line.startswith("+ helm upgrade --install openfaas "))
    values = {path: millicpu(cpu) for path, cpu in re.findall(r"--set ([\w]+)\.resources\.requests\.cpu=(\S+)", openfaas)}
    rows = []
    for key in covered:
        for component, container, upstream, replicas, source in UPSTREAM[key]:
            override = values.get(container) if key.startswith("helm") else patched.pop((component, container), None)
            cpu = upstream if override is None else override
            note = source if override is None else f"{upstream}m upstream ({source}); k8s/bootstrap.sh sets {override}m"
            rows.append((component, cpu * replicas, note))
    assert not patched, f"the bootstrap patches what the table does not know: {patched}"
    return rows


def pod_requests(spec: dict) -> int:
    return sum(millicpu((c.get("resources") or {}).get("requests", {}).get("cpu", 0)) for c in spec.get("containers", []))


def ours() -> list[tuple[str, int, str]]:
    """The chart (kind profile), the kind overlay and the functions, as they land on the node."""
    rows = []
    overlay = load_yaml_stream(run_tool("kubectl", "kustomize", str(REPO_ROOT / "k8s/overlays/kind")).stdout)
    config_deployment = next(o for o in overlay if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "config-deployment")
    queue_proxy = millicpu(config_deployment["data"].get("queue-sidecar-cpu-request", QUEUE_PROXY_DEFAULT))
    for obj in overlay + render_chart([CHART_DIR / "values-kind.yaml"]):
        name = f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            replicas = obj["spec"].get("replicas", 1)
            rows.append((name, pod_requests(obj["spec"]["template"]["spec"]) * replicas, "chart, values-kind.yaml"))
        elif obj["kind"] == "InferenceService":  # at most maxReplicas Triton pods, each with a queue-proxy
            pred = obj["spec"]["predictor"]
            triton = millicpu(pred["model"]["resources"]["requests"]["cpu"])
            rows.append(
                (f"{name} (Triton + queue-proxy)", (triton + queue_proxy) * pred["maxReplicas"], "chart, values-kind.yaml")
            )
        else:  # anything else that runs pods would be missed
            knative_service = obj["kind"] == "Service" and obj["apiVersion"].startswith("serving.knative.dev/")
            assert obj["kind"] not in ("Pod", "DaemonSet", "ReplicaSet", "CronJob") and not knative_service, name
    # The functions: faas-cli deploys stack.yml with the variables e2e-kind.sh sets.
    e2e = (REPO_ROOT / "k8s/e2e-kind.sh").read_text()
    env = dict(re.findall(r"(\w+)=(\S+) REGISTRY=\"\$CLUSTER_REGISTRY\" faas-cli deploy", e2e))
    stack = yaml.safe_load(envsubst((REPO_ROOT / "stack.yml").read_text(), env))
    for fn, spec in stack["functions"].items():
        replicas = int(spec["labels"]["com.openfaas.scale.min"])
        rows.append((f"openfaas-fn/{fn}", millicpu(spec["requests"]["cpu"]) * replicas, "stack.yml via k8s/e2e-kind.sh"))
    return rows


def budget() -> list[tuple[str, int, str]]:
    return controllers(dry_run()) + ours()


def test_kind_node_cpu_requests_fit():
    rows = budget()
    total = sum(cpu for _, cpu, _ in rows)
    table = "\n".join(f"{cpu:6d}m  {name:<52} {source}" for name, cpu, source in rows)
    print(f"\n{table}\n{total:6d}m  total of {NODE_MILLICPU}m ({total / NODE_MILLICPU:.0%})")
    assert total <= SHARE * NODE_MILLICPU, f"{total}m requested on a {NODE_MILLICPU}m node:\n{table}"


def test_budget_sees_every_workload():
    """The sum counts what is really there: Triton, MinIO, its Job, six functions, the controllers."""
    names = [name for name, _, _ in budget()]
    assert any("triton" in n for n in names) and any(n.endswith("-minio") for n in names)
    assert any("minio-setup" in n for n in names)
    assert sum(n.startswith("openfaas-fn/") for n in names) == 6
    assert {"knative-serving/activator", "kourier-system/3scale-kourier-gateway", "openfaas/gateway", "etcd"} <= set(names)
    assert "kserve/kserve-controller-manager" in names, "KServe's kserve.yaml is applied with extra flags, or piped"


def test_the_documented_budget_is_the_sum():
    """docs/kubernetes.md's table gives the total this test computes (it once left KServe out)."""
    total = sum(cpu for _, cpu, _ in budget())
    section = (REPO_ROOT / "docs/kubernetes.md").read_text().split("## The kind job's budget", 1)[1]
    documented = re.search(r"^\| \*\*total\*\* \| [^|]+ \| \*\*(\d+)m \((\d+) %\)\*\* \|", section, re.MULTILINE)
    assert documented, "the budget table's total row"
    assert (int(documented.group(1)), int(documented.group(2))) == (total, round(100 * total / NODE_MILLICPU))


@pytest.mark.parametrize("overridden", ["kourier", "openfaas", "functions"])
def test_budget_reads_the_overrides(overridden):
    """Each way the kind profile lowers requests is what the sum reads (a stale regex would
    silently count upstream numbers or none)."""
    rows = {name: cpu for name, cpu, _ in budget()}
    if overridden == "kourier":
        assert rows["kourier-system/3scale-kourier-gateway"] < 200
    elif overridden == "openfaas":
        assert rows["openfaas/prometheus"] < 100 and rows["openfaas/gateway"] < 100
    else:
        assert 0 < rows["openfaas-fn/image-classify"] < 100

"""What `sai cluster install` checks before it runs Helm, each problem with the command that fixes it.

The chart's own install-time checks (charts/serverless-ai/templates/_helpers.tpl, sai.clusterChecks)
already stop Helm on Knative's config-features, the model Secret's S3 annotations and a triton.mode
switch; these checks come first and cover what the chart cannot see or say well: the KServe and
Knative versions, OpenFaaS, the namespaces, Knative's scale-to-zero settings and a GPU for the GPU
profiles. The required Knative settings are read from k8s/base/knative-config.yaml, the file the
bootstrap applies, so the two cannot drift apart.

Object shapes: apiextensions.k8s.io/v1 CustomResourceDefinition, apps/v1 Deployment, v1 ConfigMap,
v1 Node (status.allocatable["nvidia.com/gpu"], set by NVIDIA's device plugin).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from sai.cluster.project import REPO_ROOT

KSERVE_VERSION = "v0.20.0"
KNATIVE_VERSION = "1.23.0"  # knative-v1.23.0; release manifests label deployments app.kubernetes.io/version
OPENFAAS_CHART = "openfaas-15.0.6"  # faas-netes chart/openfaas gateway-dep.yaml: chart: <name>-<version>
GPU_RESOURCE = "nvidia.com/gpu"
AUTOSCALER_SWITCHES = ("enable-scale-to-zero", "allow-zero-initial-scale")
KNATIVE_CONFIG = REPO_ROOT / "k8s" / "base" / "knative-config.yaml"

# Fixes name the checkout's files by absolute path: they work from any directory.
_REPO = shlex.quote(str(REPO_ROOT))
BOOTSTRAP = f"{_REPO}/k8s/bootstrap.sh --profile {{profile}}"
# What k8s/bootstrap.sh runs for each (tests/test_k8s_bootstrap.py checks these commands against its
# dry run): CRDs first, Established, then the manifests that hold resources of those kinds.
_KSERVE = "https://github.com/kserve/kserve/releases/download/v0.20.0"
FIX_KSERVE = (
    f"kubectl apply --server-side --force-conflicts -f {_KSERVE}/kserve-crds.yaml "
    "&& kubectl wait --for=condition=Established --timeout=120s crd/clusterstoragecontainers.serving.kserve.io "
    f"&& curl -fsSL {_KSERVE}/kserve.yaml | {_REPO}/.venv/bin/python -m sai.k8s.kserve_ingress disableIstioVirtualHost=true "
    "| kubectl apply --server-side --force-conflicts -f - "
    "&& kubectl -n kserve wait --for=condition=Available deployment --all --timeout=300s"
)
_KNATIVE = "https://github.com/knative/serving/releases/download/knative-v1.23.0"
_KOURIER = "https://github.com/knative-extensions/net-kourier/releases/download/knative-v1.23.0"
FIX_OPENFAAS = (
    "helm upgrade --install openfaas openfaas --repo https://openfaas.github.io/faas-netes --version 15.0.6 "
    "--namespace openfaas --set functionNamespace=openfaas-fn --set generateBasicAuth=true (k8s/bootstrap.sh sets the timeouts too)"
)


@dataclass
class Problem:
    check: str
    detail: str
    fix: str

    def __str__(self) -> str:
        return f"{self.check}: {self.detail}\n    fix: {self.fix}"


def overlay(profile: str) -> str:
    return f"{_REPO}/k8s/overlays/{'kind' if profile == 'kind' else 'gpu'}"


def fix_overlay(profile: str) -> str:
    return f"kubectl apply --server-side --field-manager=serverless-ai --force-conflicts -k {overlay(profile)}"


def fix_knative(profile: str) -> str:
    """Knative Serving, its Kourier ingress and our settings in its ConfigMaps, as the bootstrap
    installs them; on kind the bootstrap itself, which also lowers Kourier's CPU requests to fit
    the node."""
    if profile == "kind":
        return BOOTSTRAP.format(profile=profile)
    return " && ".join(
        [
            f"kubectl apply -f {_KNATIVE}/serving-crds.yaml",
            "kubectl wait --for=condition=Established --timeout=120s crd/images.caching.internal.knative.dev "
            "crd/certificates.networking.internal.knative.dev",
            f"kubectl apply -f {_KNATIVE}/serving-core.yaml",
            f"kubectl apply -f {_KOURIER}/kourier.yaml",
            "kubectl -n knative-serving wait --for=condition=Available deployment --all --timeout=300s",
            "kubectl -n kourier-system wait --for=condition=Available deployment --all --timeout=300s",
            fix_overlay(profile),
        ]
    )


def required_knative_settings(path: Path = KNATIVE_CONFIG) -> dict[str, dict[str, str]]:
    """ConfigMap name -> the data the base overlay sets (config-features, config-autoscaler)."""
    import yaml

    out = {}
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] in ("config-features", "config-autoscaler"):
            data = {k: str(v) for k, v in (doc.get("data") or {}).items()}
            if doc["metadata"]["name"] == "config-autoscaler":
                # Required switches only; the grace period is tuning (the kind overlay shortens it).
                data = {k: v for k, v in data.items() if k in AUTOSCALER_SWITCHES}
            out[doc["metadata"]["name"]] = data
    return out


def _crd(crds: list[dict], name: str) -> dict | None:
    return next((c for c in crds if (c.get("metadata") or {}).get("name") == name), None)


def _served(crd: dict, version: str) -> bool:
    return any(v.get("name") == version and v.get("served") for v in (crd.get("spec") or {}).get("versions") or [])


def _available(deployment: dict | None) -> bool:
    for c in ((deployment or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Available":
            return c.get("status") == "True"
    return False


def _image_tag(deployment: dict, container: str | None = None) -> str:
    containers = ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    for c in containers:
        if container is None or c.get("name") == container:
            image = c.get("image", "")
            return image.rsplit("@", 1)[0].rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    return ""


def check(
    profile: str,
    crds: list[dict],
    deployments: dict[str, dict | None],
    configmaps: dict[str, dict | None],
    namespaces: dict[str, dict | None],
    nodes: list[dict],
    release_namespace: str,
) -> list[Problem]:
    """deployments/configmaps are keyed "namespace/name"; namespaces by name; None = missing."""
    problems: list[Problem] = []
    fix_settings, fix_knative_install = fix_overlay(profile), fix_knative(profile)

    # Knative Serving: CRD, controller running at the pinned version, the settings scale to zero needs.
    ksvc_crd = _crd(crds, "services.serving.knative.dev")
    if ksvc_crd is None or not _served(ksvc_crd, "v1"):
        problems.append(Problem("Knative Serving", "CRD services.serving.knative.dev (v1) is not installed", fix_knative_install))
    else:
        ctrl = deployments.get("knative-serving/controller")
        version = ((ctrl or {}).get("metadata") or {}).get("labels", {}).get("app.kubernetes.io/version", "")
        problems += _deployment(
            "Knative Serving",
            "knative-serving/controller",
            ctrl,
            version,
            KNATIVE_VERSION,
            f"version {version or 'unknown'} installed",
            fix_knative_install,
        )
        for name in ("activator", "autoscaler"):
            key = f"knative-serving/{name}"
            if deployments.get(key) is not None:
                problems += _deployment("Knative Serving", key, deployments[key], "", "", "", fix_knative_install)
        for cm_name, want in required_knative_settings().items():
            cm = configmaps.get(f"knative-serving/{cm_name}")
            have = (cm or {}).get("data") or {}
            wrong = sorted(k for k, v in want.items() if have.get(k) != v and not _default_ok(cm_name, k, v, have))
            if cm is None or wrong:
                what = (
                    f"ConfigMap knative-serving/{cm_name} is missing"
                    if cm is None
                    else f"knative-serving/{cm_name} needs " + ", ".join(f"{k}={want[k]!r} (has {have.get(k)!r})" for k in wrong)
                )
                problems.append(Problem("Knative settings", what, fix_settings))

    # KServe (not for the knative profile, which runs Triton as a plain Knative Service).
    if profile != "knative":
        isvc_crd = _crd(crds, "inferenceservices.serving.kserve.io")
        if isvc_crd is None or not _served(isvc_crd, "v1beta1"):
            problems.append(Problem("KServe", "CRD inferenceservices.serving.kserve.io (v1beta1) is not installed", FIX_KSERVE))
        elif _crd(crds, "servingruntimes.serving.kserve.io") is None:
            problems.append(Problem("KServe", "CRD servingruntimes.serving.kserve.io is not installed", FIX_KSERVE))
        else:
            mgr = deployments.get("kserve/kserve-controller-manager")
            tag = _image_tag(mgr, "manager") if mgr else ""
            problems += _deployment(
                "KServe",
                "kserve/kserve-controller-manager",
                mgr,
                tag,
                KSERVE_VERSION,
                f"controller image tag {tag or 'unknown'}",
                FIX_KSERVE,
            )

    # OpenFaaS CE: the gateway of the pinned chart.
    gw = deployments.get("openfaas/gateway")
    chart = ((gw or {}).get("metadata") or {}).get("labels", {}).get("chart", "")
    problems += _deployment(
        "OpenFaaS", "openfaas/gateway", gw, chart, OPENFAAS_CHART, f"gateway from chart {chart or 'unknown'}", FIX_OPENFAAS
    )

    for ns in (release_namespace, "openfaas-fn"):
        if namespaces.get(ns) is None:
            problems.append(Problem("Namespaces", f"namespace {ns} does not exist (with its Pod Security labels)", fix_settings))

    # A GPU somewhere, for the profiles that request one.
    if profile in ("gpu", "knative"):
        gpus = {
            n["metadata"]["name"]: _quantity(((n.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE)) for n in nodes
        }
        if not any(gpus.values()):
            problems.append(
                Problem(
                    "GPU",
                    f"no node offers {GPU_RESOURCE} (allocatable)",
                    "install NVIDIA's GPU operator (k8s/bootstrap.sh --profile gpu --gpu-operator; add --gpu-operator-driver=false "
                    "where the node image has a driver) on GPU nodes; with a GPU node "
                    "group that scales from zero there may be none yet: then pass --skip-gpu-check (docs/kubernetes.md, "
                    "GPU node groups that scale from zero)",
                )
            )
    return problems


def _deployment(check: str, key: str, dep: dict | None, have: str, want: str, what: str, fix: str) -> list[Problem]:
    """A prerequisite's Deployment: present, at the pinned version (have == want), Available."""
    if dep is None:
        return [Problem(check, f"no deployment {key}", fix)]
    out = []
    if have != want:
        out.append(Problem(check, f"{what}, {want} expected", fix))
    if not _available(dep):
        namespace, name = key.split("/")
        out.append(Problem(check, f"deployment {key} is not Available", f"kubectl -n {namespace} describe deployment {name}"))
    return out


def _default_ok(cm_name: str, key: str, want: str, have: dict) -> bool:
    """Knative's defaults count as set when they equal what we need, knative-v1.23.0:
    enable-scale-to-zero is true (pkg/autoscaler/config/config.go), emptyDir volumes are enabled
    (pkg/apis/config/features.go)."""
    if key in have:
        return False
    return (cm_name, key, want) in {
        ("config-autoscaler", "enable-scale-to-zero", "true"),
        ("config-features", "kubernetes.podspec-volumes-emptydir", "enabled"),
    }


def _quantity(value) -> int:
    try:
        return int(str(value or "0"))
    except ValueError:
        return 0


def gather(reads, profile: str, release_namespace: str) -> dict:
    """Read what check() needs, through reads.ClusterReads (or recorded objects)."""
    deps = {}
    for key in (
        "knative-serving/controller",
        "knative-serving/activator",
        "knative-serving/autoscaler",
        "kserve/kserve-controller-manager",
        "openfaas/gateway",
    ):
        ns, name = key.split("/")
        deps[key] = reads.deployment(ns, name)
    cms = {f"knative-serving/{n}": reads.configmap("knative-serving", n) for n in ("config-features", "config-autoscaler")}
    namespaces = {ns: reads.namespace(ns) for ns in (release_namespace, "openfaas-fn")}
    return {
        "profile": profile,
        "crds": reads.crds(),
        "deployments": deps,
        "configmaps": cms,
        "namespaces": namespaces,
        "nodes": reads.nodes(),
        "release_namespace": release_namespace,
    }

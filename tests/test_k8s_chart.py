"""Offline checks of charts/serverless-ai: helm lint, schema validation of values, every rendered
object against Kubernetes' strict schemas or its upstream CRD, and the invariants the platform
relies on (scale to zero, GPU only on Triton, security, NetworkPolicy, probes, timeouts).

Runs the real helm binary (`sai tools install`); a missing helm or CRD folder is a failure."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from sai.errors import SaiError
from sai.k8s.tools import CHART_DIR, REPO_ROOT, ManifestValidator, render_chart, run_tool

PROFILES = {
    "default": [],
    "gpu": [CHART_DIR / "values-gpu.yaml"],
    "kind": [CHART_DIR / "values-kind.yaml"],
    "knative": [CHART_DIR / "values-knative.yaml"],
}
# Everything optional switched on, so each template is rendered and validated at least once.
ALL_ON = [
    "minio.enabled=true",
    "monitoring.podMonitors=true",
    "modelRepository.localModelCache.enabled=true",
]
MONITORING_API = ["monitoring.coreos.com/v1"]
FUNCTIONS = ["image-classify", "text-sentiment", "text-embed", "text-keywords", "object-classify"]
MODELS = ["image_classifier", "text_encoder", "sentiment_head", "text_sentiment"]


@pytest.fixture(scope="module")
def validator():
    return ManifestValidator()


@pytest.fixture(scope="module")
def rendered():
    """Each profile rendered once, as the Prometheus Operator API were present."""
    return {name: render_chart(files, api_versions=MONITORING_API) for name, files in PROFILES.items()}


def one(objs, kind, name_part=""):
    found = [o for o in objs if o["kind"] == kind and name_part in o["metadata"]["name"]]
    assert len(found) == 1, f"expected one {kind} *{name_part}*, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def triton_workload(objs):
    """(pod-level spec, Triton container, revision annotations) for either Triton mode."""
    isvc = [o for o in objs if o["kind"] == "InferenceService"]
    if isvc:
        pred = isvc[0]["spec"]["predictor"]
        runtime = one(objs, "ServingRuntime")
        container = {**runtime["spec"]["containers"][0], **pred["model"]}
        return pred, container, isvc[0]["metadata"]["annotations"]
    ksvc = one(objs, "Service", "triton-predictor")
    tmpl = ksvc["spec"]["template"]
    return tmpl["spec"], tmpl["spec"]["containers"][0], tmpl["metadata"]["annotations"]


def timeouts(objs):
    data = one(objs, "ConfigMap", "timeouts")["data"]
    return {k: int(v) for k, v in data.items() if k.endswith("Seconds")}


# ---- lint, schema, validation -------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_helm_lint_strict(profile):
    args = [x for f in PROFILES[profile] for x in ("-f", str(f))]
    out = run_tool("helm", "lint", "--strict", str(CHART_DIR), *args).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("profile", PROFILES)
def test_every_object_validates(profile, rendered, validator):
    objs = rendered[profile]
    assert len(objs) >= 5
    problems = [e for o in objs for e in validator.errors(o)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("functions_mode", ["openfaas", "knative"])
@pytest.mark.parametrize("triton_mode", ["kserve", "knative"])
def test_all_optional_components_validate(triton_mode, functions_mode, validator):
    sets = ALL_ON + [f"triton.mode={triton_mode}", f"functions.mode={functions_mode}"]
    if triton_mode == "knative":
        sets.remove("modelRepository.localModelCache.enabled=true")  # KServe-only feature
    objs = render_chart(sets=sets)
    kinds = {o["kind"] for o in objs}
    assert {"PodMonitor", "Deployment", "Job", "NetworkPolicy"} <= kinds
    if triton_mode == "kserve":
        assert {"LocalModelCache", "LocalModelNodeGroup", "InferenceService", "ServingRuntime"} <= kinds
    problems = [e for o in objs for e in validator.errors(o)]
    assert not problems, "\n".join(problems)


def test_pvc_model_repository_validates(validator):
    for mode in ("kserve", "knative"):
        objs = render_chart(sets=["modelRepository.source=pvc", f"triton.mode={mode}"])
        assert not [e for o in objs for e in validator.errors(o)]
        _, container, _ = triton_workload(objs)
        if mode == "kserve":
            assert container["storageUri"] == "pvc://serverless-ai-models"
        else:
            assert {"name": "models", "mountPath": "/mnt/models", "readOnly": True} in container["volumeMounts"]


def test_validator_rejects_unknown_fields_and_unknown_kinds(rendered, validator):
    """Guards the guard: the checks above must be able to fail."""
    isvc = one(rendered["default"], "InferenceService")
    bad = json.loads(json.dumps(isvc))
    bad["spec"]["predictor"]["minReplica"] = 0
    assert validator.errors(bad)
    fn = json.loads(json.dumps(one(rendered["default"], "Function", "image-classify")))
    fn["spec"]["replicas"] = 2
    assert validator.errors(fn)
    cm = json.loads(json.dumps(one(rendered["default"], "ConfigMap", "timeouts")))
    cm["spec"] = {}
    assert validator.errors(cm)
    assert validator.errors({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


@pytest.mark.parametrize(
    "bad_set, message",
    [
        ("triton.minReplicas=-1", "minReplicas"),
        ("triton.maxReplicas=0", "maxReplicas"),
        ("functions.minReplicas=-3", "minReplicas"),
        ("triton.gpu=-1", "gpu"),
        ("timeouts.tritonColdStartSeconds=-5", "tritonColdStartSeconds"),
        ("timeouts.marginSeconds=0", "marginSeconds"),
        ("triton.bogus=1", "bogus"),
        ("bogus=1", "bogus"),
        ("functions.items.image-resize.enabled=true", "image-resize"),
        ("triton.mode=docker", "mode"),
        ("functions.mode=lambda", "mode"),
        ("modelRepository.s3.uri=http://bucket/x", "uri"),
        ("monitoring.podMonitors=maybe", "podMonitors"),
    ],
)
def test_values_schema_rejects(bad_set, message):
    with pytest.raises(SaiError) as err:
        render_chart(sets=[bad_set])
    assert message in str(err.value)


def test_knative_function_timeout_cap():
    """Knative caps revision timeouts at 600 s: the chart refuses a function timeout above it."""
    with pytest.raises(SaiError, match="600"):
        render_chart(sets=["functions.mode=knative", "timeouts.tritonColdStartSeconds=590", "timeouts.marginSeconds=15"])


# ---- invariants ---------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_triton_scales_to_zero(profile, rendered):
    objs = rendered[profile]
    pod, _, ann = triton_workload(objs)
    assert ann["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev"  # KPA: only it scales to 0
    assert ann["autoscaling.knative.dev/scale-to-zero-pod-retention-period"]
    assert "autoscaling.knative.dev/initial-scale" in ann
    isvc = [o for o in objs if o["kind"] == "InferenceService"]
    if isvc:
        assert isvc[0]["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
        assert pod["minReplicas"] == 0
    else:
        assert ann["autoscaling.knative.dev/min-scale"] == "0"


@pytest.mark.parametrize("profile", PROFILES)
def test_gpu_requested_only_by_triton(profile, rendered):
    def paths_with_gpu(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "nvidia.com/gpu":
                    yield path
                yield from paths_with_gpu(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from paths_with_gpu(v, f"{path}[{i}]")

    objs = rendered[profile]
    holders = {f"{o['kind']}/{o['metadata']['name']}" for o in objs if list(paths_with_gpu(o))}
    assert all("triton" in h for h in holders), holders
    _, container, _ = triton_workload(objs)
    res = container["resources"]
    if profile == "kind":
        assert not holders, "the CPU profile must not ask for GPUs"
    else:
        # Extended resources: request must equal limit.
        assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("profile", ["gpu", "knative"])
def test_gpu_scheduling(profile, rendered):
    pod, _, _ = triton_workload(rendered[profile])
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["runtimeClassName"] == "nvidia"


def pod_specs(objs):
    """(name, pod spec) of every pod template the chart renders, Triton included."""
    for o in objs:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in ("Deployment", "Job") or o["kind"] == "Service" and o["apiVersion"].startswith("serving.knative.dev"):
            yield name, o["spec"]["template"]["spec"]
    if any(o["kind"] == "InferenceService" for o in objs):
        pred, container, _ = triton_workload(objs)
        yield "InferenceService", {**pred, "containers": [container]}


@pytest.mark.parametrize("functions_mode", ["openfaas", "knative"])
@pytest.mark.parametrize("profile", PROFILES)
def test_security_and_resources_everywhere(profile, functions_mode):
    objs = render_chart(PROFILES[profile], ALL_ON[:1] + [f"functions.mode={functions_mode}"])
    specs = list(pod_specs(objs))
    assert len(specs) >= 3
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), name
            for env in c.get("env", []):
                if re.search(r"KEY|SECRET|PASSWORD|USER", env["name"]):
                    assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], (name, env["name"])
    for fn in (o for o in objs if o["kind"] == "Function"):
        assert fn["spec"]["readOnlyRootFilesystem"] is True
        assert fn["spec"]["requests"] and fn["spec"]["limits"]


def test_no_secret_values_in_chart(rendered):
    """Credentials only come from existing Secrets: the chart never renders a Secret."""
    for objs in rendered.values():
        assert not [o for o in objs if o["kind"] == "Secret"]
    sa = one(rendered["default"], "ServiceAccount")
    assert sa["secrets"] == [{"name": "serverless-ai-models-s3"}]


@pytest.mark.parametrize("profile", PROFILES)
def test_network_policy_guards_triton(profile, rendered):
    objs = rendered[profile]
    _ = triton_workload(objs)
    isvc = [o for o in objs if o["kind"] == "InferenceService"]
    if isvc:
        pod_labels = isvc[0]["spec"]["predictor"]["labels"]
    else:
        pod_labels = one(objs, "Service", "triton-predictor")["spec"]["template"]["metadata"]["labels"]
    policy = one(objs, "NetworkPolicy", "triton")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items(), "the policy must select the Triton pods"
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    open_rules = [r for r in policy["spec"]["ingress"] if "ports" not in r]
    allowed = {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for r in open_rules for p in r["from"]}
    assert allowed == {"openfaas-fn", "knative-serving", "kourier-system"}
    metrics_rules = [r for r in policy["spec"]["ingress"] if "ports" in r]
    assert {p["port"] for r in metrics_rules for p in r["ports"]} == {8002, 9091}
    for r in policy["spec"]["ingress"]:
        for peer in r["from"]:
            assert "ipBlock" not in peer and peer.get("namespaceSelector"), "no wildcard peers"


@pytest.mark.parametrize("profile", PROFILES)
def test_triton_args_and_probes(profile, rendered):
    _, container, _ = triton_workload(rendered[profile])
    args = container["args"]
    assert args[0] == "tritonserver"
    assert "--strict-readiness=true" in args
    assert "--metrics-port=8002" in args and "--allow-metrics=true" in args
    assert "--http-port=8080" in args
    assert [p["containerPort"] for p in container["ports"]] == [8080]  # Knative: one port
    assert sorted(a.split("=", 1)[1] for a in args if a.startswith("--load-model=")) == sorted(MODELS)
    config = [a for a in args if a.startswith("--model-config-name")]
    assert config == (["--model-config-name=cpu"] if profile == "kind" else [])
    image = container.get("image") or one(rendered[profile], "ServingRuntime")["spec"]["containers"][0]["image"]
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", image)
    ready = container["readinessProbe"]["httpGet"]
    assert ready == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


@pytest.mark.parametrize("profile", PROFILES)
def test_timeouts_ordered(profile, rendered):
    """gateway >= function exec/read/write >= Triton cold-start budget, as rendered."""
    objs = rendered[profile]
    t = timeouts(objs)
    cold, fn, gw, gws = (
        t["tritonColdStartSeconds"], t["functionTimeoutSeconds"], t["gatewayTimeoutSeconds"], t["gatewayServerTimeoutSeconds"])
    assert gws > gw > fn > cold > 0
    pod, _, ann = triton_workload(objs)
    assert (pod.get("timeout") or pod.get("timeoutSeconds")) == cold
    assert ann["serving.knative.dev/progress-deadline"] == f"{cold}s"
    envs = [o["spec"]["environment"] for o in objs if o["kind"] == "Function"]
    for ks in (o for o in objs if o["kind"] == "Service" and o["metadata"]["namespace"] == "openfaas-fn"):
        assert ks["spec"]["template"]["spec"]["timeoutSeconds"] == fn
        envs.append({e["name"]: e["value"] for e in ks["spec"]["template"]["spec"]["containers"][0]["env"]})
    if profile != "kind":  # kind deploys the functions with faas-cli (checked in test_k8s_stack)
        assert envs
    for env in envs:
        for key in ("exec_timeout", "read_timeout", "write_timeout"):
            assert int(env[key].rstrip("s")) == fn
        assert int(env["TRITON_TIMEOUT_S"]) == cold
    assert fn <= 600, "Knative's max-revision-timeout-seconds"


@pytest.mark.parametrize("profile", PROFILES)
def test_functions_point_at_triton(profile, rendered):
    objs = rendered[profile]
    isvc = [o for o in objs if o["kind"] == "InferenceService"]
    # KServe names the Knative service of a predictor <isvc>-predictor; knative mode uses that name.
    svc = f"{isvc[0]['metadata']['name']}-predictor" if isvc else one(objs, "Service", "triton-predictor")["metadata"]["name"]
    expected = f"{svc}.serverless-ai.svc.cluster.local:80"
    assert one(objs, "ConfigMap", "timeouts")["data"]["tritonUrl"] == expected
    fns = [o for o in objs if o["kind"] == "Function" or (o["kind"] == "Service" and o["metadata"]["namespace"] == "openfaas-fn")]
    names = sorted(o["metadata"]["name"] for o in fns)
    assert names == ([] if profile == "kind" else sorted(FUNCTIONS))
    for o in fns:
        env = o["spec"].get("environment") or {
            e["name"]: e["value"] for e in o["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["TRITON_URL"] == expected
        assert not env["TRITON_URL"].startswith("http"), "tritonclient HTTP takes host:port"
        if o["metadata"]["name"] in ("image-classify", "object-classify"):
            assert env["MODEL_NAME"] == "image_classifier"


def test_models_match_model_repository(rendered):
    _, container, _ = triton_workload(rendered["default"])
    loaded = sorted(a.split("=", 1)[1] for a in container["args"] if a.startswith("--load-model="))
    on_disk = sorted(p.parent.name for p in (REPO_ROOT / "model_repository").glob("*/config.pbtxt"))
    assert loaded == on_disk == sorted(MODELS)
    for m in MODELS:  # the kind profile loads configs/cpu.pbtxt
        assert (REPO_ROOT / "model_repository" / m / "configs" / "cpu.pbtxt").is_file(), m


def test_pod_monitors_follow_the_api():
    assert not [o for o in render_chart() if o["kind"] == "PodMonitor"], "auto: absent without the API"
    monitors = [o for o in render_chart(api_versions=MONITORING_API) if o["kind"] == "PodMonitor"]
    triton = one(monitors, "PodMonitor", "triton")
    assert triton["spec"]["podMetricsEndpoints"][0]["portNumber"] == 8002
    assert one(monitors, "PodMonitor", "functions")["metadata"]["namespace"] == "openfaas-fn"


def test_grafana_dashboard(rendered):
    cm = one(rendered["default"], "ConfigMap", "dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["serverless-ai.json"])
    text = json.dumps(dash)
    assert "__" not in text.replace("__name__", ""), "placeholders left"
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in ("nv_inference_request_success", "nv_inference_request_duration_us",
                   "nv_inference_queue_duration_us", "nv_gpu_utilization",
                   "kube_deployment_status_replicas_available", "activator_request_count"):
        assert metric in exprs, metric
    assert 'pod=~"serverless-ai-triton-predictor-.*"' in exprs


def test_minio_webhook_targets_object_classify():
    for mode, url in [("openfaas", "http://gateway.openfaas.svc.cluster.local:8080/async-function/object-classify"),
                      ("knative", "http://object-classify.openfaas-fn.svc.cluster.local")]:
        objs = render_chart(sets=["minio.enabled=true", f"functions.mode={mode}"])
        env = {e["name"]: e.get("value") for e in one(objs, "Deployment", "minio")["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_SAI"] == url
        job = one(objs, "Job", "minio-setup")
        script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
        assert "arn:minio:sqs::SAI:webhook" in script and '--prefix "incoming/"' in script
        oc = one(objs, "Function" if mode == "openfaas" else "Service", "object-classify")
        oc_env = oc["spec"].get("environment") or {
            e["name"]: e["value"] for e in oc["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert oc_env["S3_ENDPOINT"] == "http://serverless-ai-minio.serverless-ai.svc.cluster.local:9000"
        assert oc_env["INPUT_PREFIX"] == "incoming/", "classify exactly what MinIO notifies about"
        assert not oc_env["RESULTS_PREFIX"].startswith(oc_env["INPUT_PREFIX"]), "results must not re-trigger"
    with pytest.raises(SaiError, match="resultsPrefix"):
        render_chart(sets=["functions.objectClassify.resultsPrefix=incoming/results/"])


# ---- documentation ------------------------------------------------------------------------------


def leaf_paths(node, prefix=""):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from leaf_paths(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix


def test_values_documented():
    """Every value has a comment and a row in the chart README's parameter table."""
    text = (CHART_DIR / "values.yaml").read_text()
    lines = text.splitlines()
    documented: list[tuple[int, bool]] = []  # (indent, has comment) of the enclosing keys
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)(- )?([A-Za-z][\w./-]*):", line)
        if not m or m.group(2):
            continue
        indent = len(m.group(1))
        documented = [d for d in documented if d[0] < indent]
        commented = lines[i - 1].strip().startswith("#") if i else False
        # a comment directly above, or inside a block whose key has one (e.g. resources.requests.cpu)
        assert commented or any(c for _, c in documented), f"values.yaml:{i + 1} {line.strip()} has no comment"
        documented.append((indent, commented))
    readme = (CHART_DIR / "README.md").read_text()
    for path in leaf_paths(yaml.safe_load(text)):
        top = re.sub(r"\.(requests|limits)\..*$", "", path)
        assert f"`{path}`" in readme or f"`{top}`" in readme, f"{path} missing from charts/serverless-ai/README.md"

"""Offline checks of charts/serverless-ai: helm lint, schema validation of values, every rendered
object against Kubernetes' strict schemas or its upstream CRD, and the invariants the platform
relies on (scale to zero, GPU only on Triton, security, NetworkPolicy, probes, timeouts).

Runs the real helm binary (`sai tools install`); a missing helm or CRD folder is a failure."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from helpers import MODELS_BUCKET

from sai.k8s import helm_kubectl
from sai.k8s.helm_kubectl import CHART_DIR, REPO_ROOT, ManifestValidator, load_yaml_stream, run_tool
from sai.sai_error import SaiError

PROFILES = {
    "default": [MODELS_BUCKET],
    "gpu": [CHART_DIR / "values-gpu.yaml", MODELS_BUCKET],
    "kind": [CHART_DIR / "values-kind.yaml"],
    "knative": [CHART_DIR / "values-knative.yaml", MODELS_BUCKET],
}
# Function modes other than "none" need the registry the cluster pulls the images from.
REGISTRY = "functions.imageRegistry=registry.example.com/serverless-ai"
# Everything optional switched on, so each template is rendered and validated at least once.
ALL_ON = [
    REGISTRY,
    "minio.enabled=true",
    "monitoring.podMonitors=true",
    "modelRepository.localModelCache.enabled=true",
    "triton.prePull.enabled=true",
    "connectors.cron.enabled=true",
    "connectors.nats.enabled=true",
]
MONITORING_API = ["monitoring.coreos.com/v1"]
# MinIO's webhook target waits this long for response headers
# (minio RELEASE.2025-04-22T22-12-26Z internal/event/target/webhook.go: ResponseHeaderTimeout).
MINIO_WEBHOOK_HEADER_TIMEOUT_S = 60
FUNCTIONS = ["image-classify", "text-sentiment", "text-embed", "text-keywords", "text-entities", "object-classify"]
MODELS = ["image_classifier", "text_encoder", "sentiment_head", "text_sentiment", "entity_head", "text_entities"]


def render_chart(values=(), sets=(), **kwargs) -> list[dict]:
    """`helm template` as a user runs it: with a values file that names a models bucket, before the
    rest (the chart has no default bucket; test_no_default_models_bucket checks the refusal)."""
    return helm_kubectl.render_chart([MODELS_BUCKET, *values], sets, **kwargs)


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
    assert {"PodMonitor", "Deployment", "Job", "NetworkPolicy", "DaemonSet"} <= kinds
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
    fn = json.loads(json.dumps(one(render_chart(sets=[REGISTRY, "functions.mode=openfaas"]), "Function", "image-classify")))
    fn["spec"]["replicas"] = 2
    assert validator.errors(fn)
    cm = json.loads(json.dumps(one(rendered["default"], "ConfigMap", "timeouts")))
    cm["spec"] = {}
    assert validator.errors(cm)
    fn = json.loads(json.dumps(one(render_chart(sets=[REGISTRY, "functions.mode=knative"]), "Service", "image-classify")))
    fn["spec"]["template"]["spec"]["containers"][0]["securityContext"]["fsGroup"] = 1  # a pod-level field
    assert validator.errors(fn)
    assert validator.errors({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


@pytest.mark.parametrize(
    "bad_set, message",
    [
        ("triton.minReplicas=-1", "minReplicas"),
        ("triton.maxReplicas=0", "maxReplicas"),
        ("functions.labels.com\\.openfaas\\.scale\\.max=0", "com.openfaas.scale.max"),
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
        render_chart(
            sets=[REGISTRY, "functions.mode=knative", "timeouts.tritonColdStartSeconds=590", "timeouts.marginSeconds=15"]
        )


def test_progress_deadline_below_the_revision_timeout_is_refused():
    """Knative would cancel the wake (deadline + 30 s) while a request still waits for it."""
    with pytest.raises(SaiError, match="tritonProgressDeadlineSeconds"):
        render_chart(sets=["timeouts.tritonProgressDeadlineSeconds=300"])
    assert render_chart(sets=["timeouts.tritonProgressDeadlineSeconds=555"])


@pytest.mark.parametrize("mode", ["openfaas", "knative"])
def test_function_images_need_a_registry(mode):
    """No default registry users cannot push to: modes that render function pods demand one."""
    with pytest.raises(SaiError, match="functions.imageRegistry is required"):
        render_chart(sets=[f"functions.mode={mode}"])
    objs = render_chart(sets=[f"functions.mode={mode}", "functions.imageRegistry=registry.example.com:5000/team"])
    images = {c["image"] for o in objs for c in pod_containers(o)} | {o["spec"]["image"] for o in objs if o["kind"] == "Function"}
    assert "registry.example.com:5000/team/image-classify:0.1.0" in images


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
        # v0.20's name for Serverless (kserve pkg/constants/constants.go DeploymentModeType)
        assert isvc[0]["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
        assert pod["minReplicas"] == 0  # KServe's default is 1
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
    """(name, pod spec, run by Knative) of every pod template the chart renders, Triton included."""
    for o in objs:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in ("Deployment", "Job", "DaemonSet"):
            yield name, o["spec"]["template"]["spec"], False
        elif o["kind"] == "Service" and o["apiVersion"].startswith("serving.knative.dev"):
            yield name, o["spec"]["template"]["spec"], True
    if any(o["kind"] == "InferenceService" for o in objs):
        pred, container, _ = triton_workload(objs)
        yield "InferenceService", {**pred, "containers": [container]}, True


def pod_containers(obj):
    """Containers of one Deployment, Job or Knative Service."""
    if obj["kind"] == "InferenceService":
        return []
    return [c for _, spec, _ in pod_specs([obj]) for c in spec["containers"]]


@pytest.mark.parametrize("functions_mode", ["openfaas", "knative"])
@pytest.mark.parametrize("profile", PROFILES)
def test_security_and_resources_everywhere(profile, functions_mode):
    connectors = [s for s in ALL_ON if s.startswith("connectors.")]
    sets = ALL_ON[:2] + connectors + [f"functions.mode={functions_mode}", "triton.prePull.enabled=true"]
    objs = render_chart(PROFILES[profile], sets)
    specs = list(pod_specs(objs))
    assert len(specs) >= 3
    for name, spec, knative in specs:
        pod_sc = spec.get("securityContext") or {}
        if knative:
            # Knative rejects any pod-level securityContext field unless config-features
            # kubernetes.podspec-securitycontext is enabled (off by default; features.go).
            assert not pod_sc, name
        for c in spec["containers"]:
            sc = {**pod_sc, **c["securityContext"]}  # effective: the container's fields win
            assert sc["runAsNonRoot"] is True, name
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
            if knative:
                assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0, name  # numeric: verifiable
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


def test_knative_functions_find_their_packages():
    """python3-http-debian installs a function's requirements with `pip install --user` as `app`
    (HOME /home/app). Run as uid 12000 without a passwd entry, HOME would be / (runc) and Python's
    user site /.local/...: the chart sets HOME=/home/app. Python itself decides, here."""
    objs = render_chart(sets=[REGISTRY, "functions.mode=knative"])
    for ks in (o for o in objs if o["kind"] == "Service" and o["metadata"]["namespace"] == "openfaas-fn"):
        c = ks["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["HOME"] == "/home/app", ks["metadata"]["name"]
        assert c["securityContext"]["runAsUser"] == 12000
    probe = "import site; print(site.getusersitepackages())"
    for home, expected in (("/home/app", "/home/app/.local/lib/python"), ("/", "/.local/lib/python")):
        out = subprocess.run(
            [sys.executable, "-c", probe], env={"HOME": home, "PATH": "/usr/bin"}, capture_output=True, text=True, check=True
        ).stdout
        assert out.startswith(expected), (home, out)


def test_no_secret_values_in_chart(rendered):
    """Credentials only come from existing Secrets. The one Secret the chart renders is Triton's
    generated admin key: no user credential, kept across upgrades and uninstall."""
    for objs in rendered.values():
        secrets = [o for o in objs if o["kind"] == "Secret"]
        assert [o["metadata"]["name"] for o in secrets] == ["serverless-ai-triton-admin"]
        admin = secrets[0]
        assert admin["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert len(base64.b64decode(admin["data"]["triton-admin-key"])) == 40
    sa = one(rendered["default"], "ServiceAccount")
    assert sa["secrets"] == [{"name": "serverless-ai-models-s3"}]
    # KServe ignores ServiceAccount S3 annotations without an EKS role ARN; they live on the Secret.
    assert not [k for k in (sa["metadata"].get("annotations") or {}) if k.startswith("serving.kserve.io/s3-")]


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
    assert "--allow-grpc=false" in args  # gRPC has its own model-control RPCs: closed with it
    restricted = [a for a in args if a.startswith("--http-restricted-api=")]
    assert restricted == [
        "--http-restricted-api=model-repository,shared-memory,statistics,trace,logging:triton-admin-key=$(TRITON_ADMIN_KEY)"
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["TRITON_ADMIN_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "serverless-ai-triton-admin",
        "key": "triton-admin-key",
    }
    assert [p["containerPort"] for p in container["ports"]] == [8080]  # Knative: one port
    assert sorted(a.split("=", 1)[1] for a in args if a.startswith("--load-model=")) == sorted(MODELS)
    config = [a for a in args if a.startswith("--model-config-name")]
    # kind: the CPU image built from k8s/images/triton-cpu (PyPI tritonserver + onnx_local, run
    # as a container by tests/test_triton_container.py) with configs/local.pbtxt; else NGC's.
    assert config == (["--model-config-name=local"] if profile == "kind" else [])
    image = container.get("image") or one(rendered[profile], "ServingRuntime")["spec"]["containers"][0]["image"]
    if profile == "kind":
        assert image.startswith("kind.local/"), "a registry Knative does not resolve tags against"
    else:
        assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", image)


# Fields Knative lets a serving container's probes carry (serving knative-v1.23.0
# pkg/apis/serving/fieldmask.go ProbeMask + HandlerMask/HTTPGetActionMask; ContainerMask keeps
# startupProbe, and pkg/reconciler/revision/resources/deploy.go passes it to the kubelet as is).
KNATIVE_PROBE_FIELDS = {
    "httpGet",
    "initialDelaySeconds",
    "timeoutSeconds",
    "periodSeconds",
    "successThreshold",
    "failureThreshold",
    "terminationGracePeriodSeconds",
}


@pytest.mark.parametrize("profile", PROFILES)
def test_triton_probes(profile, rendered):
    """Triton opens HTTP only after loading its models: a startupProbe covers that (KServe and
    plain Knative alike), within the revision's progress-deadline; liveness/readiness come after."""
    _, container, ann = triton_workload(rendered[profile])
    startup, ready, live = container["startupProbe"], container["readinessProbe"], container["livenessProbe"]
    assert startup["httpGet"] == live["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert ready["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    for probe in (startup, ready, live):
        assert set(probe) <= KNATIVE_PROBE_FIELDS, set(probe) - KNATIVE_PROBE_FIELDS
        assert "initialDelaySeconds" not in probe, "the startup probe waits, not a fixed delay"
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["triton"]["startup"]
    if profile != "default":
        values |= yaml.safe_load(PROFILES[profile][0].read_text())["triton"].get("startup") or {}
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert values["maxSeconds"] <= budget < values["maxSeconds"] + startup["periodSeconds"]
    deadline = int(ann["serving.knative.dev/progress-deadline"].rstrip("s"))
    assert budget < deadline, "a start Knative has given up on cannot be waited for"
    # A busy Triton answers health checks late: more than the kubelet's 1 s default, and a hung
    # one is restarted after a minute.
    assert live["timeoutSeconds"] >= 3 and ready["timeoutSeconds"] >= 2
    assert 30 <= live["periodSeconds"] * live["failureThreshold"] <= 120
    if profile == "kind":  # measured: all six models load in ~4-7 s (tests/test_triton_container.py)
        assert startup["periodSeconds"] == 1 and budget >= 30


def test_startup_budget_must_fit_the_progress_deadline():
    with pytest.raises(SaiError, match="triton.startup.maxSeconds .* progress-deadline"):
        render_chart(sets=["triton.startup.maxSeconds=1200"])


@pytest.mark.parametrize("profile", PROFILES)
def test_timeouts_ordered(profile, rendered):
    """gateway >= function exec/read/write >= Triton cold-start budget, as rendered."""
    objs = rendered[profile]
    t = timeouts(objs)
    cold, fn, gw, gws = (
        t["tritonColdStartSeconds"],
        t["functionTimeoutSeconds"],
        t["gatewayTimeoutSeconds"],
        t["gatewayServerTimeoutSeconds"],
    )
    assert gws > gw > fn > cold > 0
    pod, _, ann = triton_workload(objs)
    revision = pod.get("timeout") or pod.get("timeoutSeconds")
    # The client gives up strictly before Knative cuts the request (KServe's predictor.timeout also
    # sets responseStartTimeoutSeconds: ksvc_reconciler.go).
    assert fn >= revision > cold
    # Knative cancels a wake 30 s after the progress deadline: never while a request still waits.
    deadline = ann["serving.knative.dev/progress-deadline"]
    assert re.fullmatch(r"[1-9]\d*s", deadline), "a positive Go duration in whole seconds (revision_validation.go)"
    assert int(deadline[:-1]) == t["tritonProgressDeadlineSeconds"] >= revision
    envs = [o["spec"]["environment"] for o in objs if o["kind"] == "Function"]
    for ks in (o for o in objs if o["kind"] == "Service" and o["metadata"]["namespace"] == "openfaas-fn"):
        assert ks["spec"]["template"]["spec"]["timeoutSeconds"] == fn
        envs.append({e["name"]: e["value"] for e in ks["spec"]["template"]["spec"]["containers"][0]["env"]})
    if profile == "knative":  # the others deploy them with faas-cli (checked in test_k8s_stack)
        assert envs
    for env in envs:
        for key in ("exec_timeout", "read_timeout", "write_timeout"):
            assert int(env[key].rstrip("s")) == fn
        if "S3_ENDPOINT" in env:  # object-classify answers MinIO's webhook within its 60 s
            assert int(env["TRITON_TIMEOUT_S"]) < MINIO_WEBHOOK_HEADER_TIMEOUT_S
        else:
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
    # OpenFaaS CE (every profile but knative): faas-cli deploys them, the chart renders none.
    assert names == (sorted(FUNCTIONS) if profile == "knative" else [])
    for o in fns:
        env = o["spec"].get("environment") or {
            e["name"]: e["value"] for e in o["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["TRITON_URL"] == expected
        assert not env["TRITON_URL"].startswith("http"), "tritonclient HTTP takes host:port"
        if o["metadata"]["name"] in ("image-classify", "object-classify"):
            assert env["MODEL_NAME"] == "image_classifier"


def test_models_match_model_repository(rendered):
    _, container, _ = triton_workload(rendered["default"])
    loaded = sorted(a.split("=", 1)[1] for a in container["args"] if a.startswith("--load-model="))
    on_disk = sorted(p.parent.name for p in (REPO_ROOT / "model_repository").glob("*/config.pbtxt"))
    assert loaded == on_disk == sorted(MODELS)
    for m in MODELS:  # CPU nodes with the NGC image load configs/cpu.pbtxt; kind, configs/local.pbtxt
        for name in ("cpu", "local"):
            assert (REPO_ROOT / "model_repository" / m / "configs" / f"{name}.pbtxt").is_file(), (m, name)


def test_pod_monitors_follow_the_api():
    assert not [o for o in render_chart() if o["kind"] == "PodMonitor"], "auto: absent without the API"
    monitors = [o for o in render_chart(api_versions=MONITORING_API) if o["kind"] == "PodMonitor"]
    triton, functions = one(monitors, "PodMonitor", "triton"), one(monitors, "PodMonitor", "functions")
    # Prometheus Operator keeps only declared container ports (promcfg.go); Knative declares 8080
    # for Triton, faas-netes 8080 for functions. Each endpoint selects that port and rewrites the
    # address to the undeclared metrics port.
    metrics, queue_proxy = triton["spec"]["podMetricsEndpoints"]
    assert metrics["portNumber"] == 8080
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_ip"],
        "targetLabel": "__address__",
        "regex": "(.+)",
        "replacement": "$1:8002",
    } in metrics["relabelings"]
    assert queue_proxy["port"] == "http-usermetric"
    assert functions["metadata"]["namespace"] == "openfaas-fn"
    # faas-cli-deployed (CE) functions have faas-netes' faas_function label, not the chart's.
    assert functions["spec"]["selector"] == {"matchExpressions": [{"key": "faas_function", "operator": "Exists"}]}
    (endpoint,) = functions["spec"]["podMetricsEndpoints"]
    assert endpoint["portNumber"] == 8080
    assert endpoint["relabelings"][0]["replacement"] == "$1:8081"  # of-watchdog metrics
    assert {"sourceLabels": ["__meta_kubernetes_pod_label_faas_function"], "targetLabel": "faas_function"} in endpoint[
        "relabelings"
    ]
    # the OpenFaaS gateway's own metrics port, what the dashboard's function panels read
    gateway = one(monitors, "PodMonitor", "openfaas-gateway")
    assert gateway["metadata"]["namespace"] == "openfaas" and gateway["spec"]["selector"] == {"matchLabels": {"app": "gateway"}}
    # 8082, declared as gw-metrics by OpenFaaS chart 15.0.6 (faas-netes gateway-dep.yaml)
    assert gateway["spec"]["podMetricsEndpoints"] == [{"port": "gw-metrics", "path": "/metrics", "interval": "15s"}]


def test_pod_monitor_relabelling_applies():
    """The rewrite does what Prometheus will do: the regex over the joined source labels, then
    $1 substituted (Prometheus relabel semantics: anchored regex, `;` separator)."""
    monitors = [o for o in render_chart(api_versions=MONITORING_API) if o["kind"] == "PodMonitor"]
    for monitor, port in ((one(monitors, "PodMonitor", "triton"), 8002), (one(monitors, "PodMonitor", "functions"), 8081)):
        rule = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][0]
        match = re.fullmatch(rule["regex"], "10.244.1.17")
        assert match and rule["replacement"].replace("$1", match.group(1)) == f"10.244.1.17:{port}"


# OpenTelemetry instruments Knative Serving knative-v1.23.0 registers: name -> (unit, kind, file).
KNATIVE_INSTRUMENTS = {
    "kn.revision.pods.desired": ("{item}", "gauge", "pkg/autoscaler/scaling/metrics.go"),  # autoscaler
    "kn.revision.pods.count": ("{item}", "gauge", "pkg/reconciler/autoscaling/kpa/metrics.go"),  # autoscaler
    "kn.revision.request.queued": ("{request}", "updowncounter", "pkg/activator/handler/metrics.go"),
    "kn.revision.request.active": ("{request}", "updowncounter", "pkg/activator/handler/metrics.go"),
    "kn.serving.invocation.duration": ("s", "histogram", "pkg/queue/request_metric.go"),  # queue-proxy
    "kn.serving.queue.depth": ("{request}", "gauge", "pkg/queue/request_metric.go"),  # queue-proxy
}
# Their attributes (pkg/metrics/key.go; request_metric.go adds the status code), as Prometheus
# labels, plus the target labels a PodMonitor adds (the scraped pod's namespace and name).
KNATIVE_LABELS = {
    "k8s_namespace_name",
    "kn_service_name",
    "kn_configuration_name",
    "kn_revision_name",
    "http_response_status_code",
    "namespace",
    "pod",
    "le",
}


def prometheus_names(name: str, unit: str, kind: str) -> set[str]:
    """The exported series: knative.dev/pkg serves OpenTelemetry metrics through the Prometheus
    exporter with otlptranslator's UnderscoreEscapingWithSuffixes (observability/metrics/
    prometheus_enabled.go): dots become underscores, a unit is a suffix unless it is an annotation
    in braces ("s" -> seconds), monotonic counters end in _total, histograms are _bucket/_sum/_count."""
    base = name.replace(".", "_")
    if unit and "{" not in unit:
        base += "_" + {"s": "seconds"}[unit]
    if kind == "counter":
        base += "_total"
    return {f"{base}_{part}" for part in ("bucket", "sum", "count")} if kind == "histogram" else {base}


def test_grafana_dashboard(rendered):
    cm = one(rendered["default"], "ConfigMap", "dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["serverless-ai.json"])
    text = json.dumps(dash)
    assert "__" not in text.replace("__name__", ""), "placeholders left"
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in (
        "nv_inference_request_success",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_gpu_utilization",
        "kube_deployment_status_replicas_available",
        "kn_revision_pods_desired",  # Knative's autoscaler
        "kn_revision_request_queued",  # requests the activator holds while Triton wakes
        "kn_serving_invocation_duration_seconds_count",  # Triton's queue-proxy
        "gateway_function_invocation_total",  # OpenFaaS's gateway names, as the local gateway serves them
        "gateway_functions_seconds_bucket",
    ):
        assert metric in exprs, metric
    assert 'pod=~"serverless-ai-triton-predictor-.*"' in exprs


def test_dashboard_reads_the_metric_names_knative_emits(rendered):
    """Knative 1.23 emits OpenTelemetry instruments, not the OpenCensus names of earlier releases
    (autoscaler_desired_pods, activator_request_count): every Knative series and label the dashboard
    queries is one the pinned source produces."""
    dash = json.loads(one(rendered["default"], "ConfigMap", "dashboard")["data"]["serverless-ai.json"])
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    emitted = set().union(*(prometheus_names(n, *spec[:2]) for n, spec in KNATIVE_INSTRUMENTS.items()))
    used = {m for e in exprs for m in re.findall(r"\b(?:kn|autoscaler|activator|revision)_\w+", e)}
    used -= KNATIVE_LABELS
    assert used and used <= emitted, used - emitted
    for e in exprs:
        for metric, selector in re.findall(r"\b(kn_\w+)\{([^}]*)\}", e):
            labels = set(re.findall(r"(\w+)\s*=~?", selector))
            assert labels <= KNATIVE_LABELS, (metric, labels - KNATIVE_LABELS)
        for grouping in re.findall(r"by \(([^)]*)\)", e):
            if "kn_" in e:
                assert {g.strip() for g in grouping.split(",")} <= KNATIVE_LABELS, e


def test_knative_metrics_are_exported_and_scraped():
    """Both of Knative's metrics protocols default to "none" (knative-v1.23.0
    config/core/configmaps/observability.yaml; knative.dev/pkg observability/metrics/config.go): the
    cluster settings turn on Prometheus, and a PodMonitor scrapes the activator and autoscaler on
    their declared `metrics` port (config/core/deployments/{activator,autoscaler}.yaml: 9090)."""
    for overlay in ("gpu", "kind"):
        objs = load_yaml_stream(run_tool("kubectl", "kustomize", str(REPO_ROOT / "k8s/overlays" / overlay)).stdout)
        cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "config-observability")
        assert cm["metadata"]["namespace"] == "knative-serving"
        assert cm["data"] == {"metrics-protocol": "prometheus", "request-metrics-protocol": "prometheus"}
    monitors = [o for o in render_chart(api_versions=MONITORING_API) if o["kind"] == "PodMonitor"]
    knative = one(monitors, "PodMonitor", "knative")
    assert knative["metadata"]["namespace"] == "knative-serving"
    assert knative["spec"]["selector"] == {
        "matchExpressions": [{"key": "app", "operator": "In", "values": ["activator", "autoscaler"]}]
    }
    assert knative["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    # queue-proxy serves request metrics on http-usermetric (9091: pkg/queue/sharedmain/otel.go)
    triton = one(monitors, "PodMonitor", "triton")
    assert {"port": "http-usermetric", "path": "/metrics", "interval": "15s"} in triton["spec"]["podMetricsEndpoints"]


def test_minio_webhook_targets_object_classify():
    """Events go to object-classify synchronously (a 503 keeps them in MinIO's queue), with a user
    of their own, never through /async-function (CE's queue-worker never retries)."""
    for mode, url in [
        ("openfaas", "http://gateway.openfaas.svc.cluster.local:8080/function/object-classify"),
        ("none", "http://gateway.openfaas.svc.cluster.local:8080/function/object-classify"),
        ("knative", "http://object-classify.openfaas-fn.svc.cluster.local"),
    ]:
        objs = render_chart(sets=[REGISTRY, "minio.enabled=true", f"functions.mode={mode}"])
        minio = one(objs, "Deployment", "minio")["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in minio["env"]}
        assert env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_SAI"] == url
        assert env["MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_SAI"].startswith("/data/"), "the queue must survive restarts"
        pvc = one(objs, "PersistentVolumeClaim", "minio")
        assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        job = one(objs, "Job", "minio-setup")
        container = job["spec"]["template"]["spec"]["containers"][0]
        script = container["args"][0]
        assert "arn:minio:sqs::SAI:webhook" in script and '--prefix "incoming/"' in script
        assert 'mc admin user add sai "$FUNCTIONS_ACCESS_KEY" "$FUNCTIONS_SECRET_KEY"' in script
        assert "mc admin policy attach sai serverless-ai-minio-functions --user" in script
        policy = json.loads(script.split("<<EOF\n", 1)[1].split("\nEOF", 1)[0])
        # Each call the function makes against this policy: tests/test_events_object_classify.py.
        assert policy["Statement"] == [
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": ["arn:aws:s3:::uploads"],
                "Condition": {"StringLike": {"s3:prefix": ["incoming/*"]}},
            },
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::uploads/incoming/*"]},
            # Delete: object-classify removes its per-record claim objects once a result is written.
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": ["arn:aws:s3:::uploads/results/*"],
            },
        ]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
        assert refs["FUNCTIONS_ACCESS_KEY"] == "serverless-ai-minio-functions" != refs["MINIO_ROOT_USER"]
        if mode == "none":
            continue
        oc = one(objs, "Function" if mode == "openfaas" else "Service", "object-classify")
        oc_env = oc["spec"].get("environment") or {
            e["name"]: e.get("value") for e in oc["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert oc_env["S3_ENDPOINT"] == "http://serverless-ai-minio.serverless-ai.svc.cluster.local:9000"
        assert oc_env["INPUT_PREFIX"] == "incoming/", "classify exactly what MinIO notifies about"
        assert not oc_env["RESULTS_PREFIX"].startswith(oc_env["INPUT_PREFIX"]), "results must not re-trigger"
        assert int(oc_env["TRITON_TIMEOUT_S"]) < MINIO_WEBHOOK_HEADER_TIMEOUT_S
    with pytest.raises(SaiError, match="resultsPrefix"):
        render_chart(sets=["functions.objectClassify.resultsPrefix=incoming/results/"])


def test_triton_is_cluster_local(rendered):
    """KServe copies ISVC labels onto the predictor's Knative Service (predictor.go buildObjectMeta);
    Knative then serves it on the cluster-local domain only."""
    label = {"networking.knative.dev/visibility": "cluster-local"}
    isvc = one(rendered["gpu"], "InferenceService")
    assert label.items() <= isvc["metadata"]["labels"].items()
    ksvc = one(rendered["knative"], "Service", "triton-predictor")
    assert label.items() <= ksvc["metadata"]["labels"].items()


def test_cluster_scoped_names_carry_the_release():
    objs = render_chart(sets=["modelRepository.localModelCache.enabled=true"], release="team-a")
    group = one(objs, "LocalModelNodeGroup")
    cache = one(objs, "LocalModelCache")
    assert group["metadata"]["name"].startswith("team-a-") and cache["metadata"]["name"].startswith("team-a-")
    assert cache["spec"]["nodeGroups"] == [group["metadata"]["name"]]
    # KServe runs the download Job in its job namespace and looks the ServiceAccount up there.
    accounts = {o["metadata"]["namespace"]: o for o in objs if o["kind"] == "ServiceAccount"}
    assert set(accounts) == {"serverless-ai", "kserve-localmodel-jobs"}
    assert accounts["kserve-localmodel-jobs"]["metadata"]["name"] == cache["spec"]["serviceAccountName"]


def test_image_prepull_daemonset():
    """Off by default. On: the Triton image on every node Triton may use (same selector,
    tolerations, pull secrets), sleeping, with no GPU and no NVIDIA runtime devices."""
    assert not [o for o in render_chart([CHART_DIR / "values-gpu.yaml"]) if o["kind"] == "DaemonSet"]
    objs = render_chart([CHART_DIR / "values-gpu.yaml"], ["triton.prePull.enabled=true", "triton.imagePullSecrets[0]=ngc"])
    ds = one(objs, "DaemonSet", "prepull")
    pod = ds["spec"]["template"]["spec"]
    triton_pod, triton, _ = triton_workload(objs)
    for key in ("nodeSelector", "tolerations", "imagePullSecrets"):
        assert pod[key] == triton_pod[key], key
    assert "runtimeClassName" not in pod, "no NVIDIA runtime for a container that only sleeps"
    (c,) = pod["containers"]
    runtime = one(objs, "ServingRuntime")["spec"]["containers"][0]
    assert c["image"] == runtime["image"] and c["imagePullPolicy"] == runtime["imagePullPolicy"]
    assert c["command"] == ["sleep", "infinity"]
    # The NGC image sets NVIDIA_VISIBLE_DEVICES=all; "void" makes the NVIDIA runtime (the GPU
    # operator's containerd default) treat it as a plain container.
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in c["env"]
    assert "nvidia.com/gpu" not in json.dumps(c["resources"])
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert "triton-prepull" in json.dumps(ds["spec"]["selector"]), "never selected by Triton's NetworkPolicy or monitors"


@pytest.mark.parametrize("profile", ["default", "gpu", "knative"])
def test_no_default_models_bucket(profile):
    """AWS bucket names are global: a default bucket would be somebody else's (the chart once read
    s3://models/...). Without the user's own, an S3 profile refuses to render and names the value."""
    files = [f for f in PROFILES[profile] if f != MODELS_BUCKET]
    with pytest.raises(SaiError, match=r"modelRepository\.s3\.uri is empty: set your models bucket in a values file"):
        helm_kubectl.render_chart(files)
    assert helm_kubectl.render_chart([CHART_DIR / "values-kind.yaml"]), "the kind profile reads a volume, no bucket"
    with pytest.raises(SaiError, match="does not match pattern"):
        helm_kubectl.render_chart(files, ["modelRepository.s3.uri=models"])


def test_models_bucket_is_one_value():
    """modelRepository.s3.uri is set once, in the user's values file: values.yaml leaves it empty, no
    profile sets it, and the docs and the MinIO set-up Job take it from there."""
    assert yaml.safe_load((CHART_DIR / "values.yaml").read_text())["modelRepository"]["s3"]["uri"] == ""
    for profile in ("gpu", "kind", "knative"):
        repo = profile_values(profile).get("modelRepository") or {}
        assert "uri" not in (repo.get("s3") or {}), f"values-{profile}.yaml repeats modelRepository.s3.uri"
    assert "s3://models/" not in (REPO_ROOT / "docs/kubernetes.md").read_text()
    uri = ["modelRepository.s3.uri=s3://team-a-models/serverless-ai"]
    objs = render_chart(sets=[*uri, "minio.enabled=true"])
    script = one(objs, "Job", "minio-setup")["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert 'mc mb --ignore-existing "sai/team-a-models"' in script
    assert one(objs, "InferenceService")["spec"]["predictor"]["model"]["storageUri"] == "s3://team-a-models/serverless-ai"
    # Another store than this MinIO: the Job creates no models bucket in MinIO.
    objs = render_chart(sets=[*uri, "minio.enabled=true", "modelRepository.s3.endpoint=s3.example.com"])
    script = one(objs, "Job", "minio-setup")["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "team-a-models" not in script


@pytest.mark.parametrize("mode", ["kserve", "knative"])
def test_workload_identity_for_the_model_store(mode, validator):
    """An existing ServiceAccount with an IAM role instead of keys: Triton's pod runs as it, the
    chart renders no ServiceAccount of its own and passes no key to Triton."""
    objs = render_chart(
        sets=[f"triton.mode={mode}", "modelRepository.s3.serviceAccountName=models-reader"], api_versions=MONITORING_API
    )
    assert not [e for o in objs for e in validator.errors(o)]
    assert not [o for o in objs if o["kind"] == "ServiceAccount"]
    pod, container, _ = triton_workload(objs)
    assert pod["serviceAccountName"] == "models-reader"
    assert "serverless-ai-models-s3" not in json.dumps(objs), "no reference to the key Secret"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & {e["name"] for e in container.get("env", [])}
    if mode == "kserve":
        cache = render_chart(
            sets=["modelRepository.s3.serviceAccountName=models-reader", "modelRepository.localModelCache.enabled=true"]
        )
        assert one(cache, "LocalModelCache")["spec"]["serviceAccountName"] == "models-reader"
        assert not [o for o in cache if o["kind"] == "ServiceAccount"]


# ---- install-time checks against the live cluster ------------------------------------------------
# `helm install` looks these objects up; `helm template` cannot, so each check is a named template
# that takes the looked-up object, and these tests feed it recorded ones through a wrapper chart.

# Knative Serving knative-v1.23.0 as installed: config/core/configmaps/features.yaml ships only
# `_example` in data, so every flag has its default (pkg/apis/config/features.go).
KNATIVE_DEFAULT_FEATURES = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "data": {"_example": "..."},
    "metadata": {"name": "config-features", "namespace": "knative-serving"},
}


def run_check(tmp_path, check: str, observed, values: dict | None = None) -> str:
    """Render `check` with `observed` as the lookup result; '' when it passes, else helm's error."""
    root = tmp_path / "harness"
    shutil.copytree(CHART_DIR, root / "charts" / "serverless-ai")
    (root / "Chart.yaml").write_text("apiVersion: v2\nname: harness\nversion: 0.0.1\n")
    (root / "templates").mkdir()
    (root / "templates" / "check.yaml").write_text(
        '{{- include .Values.check (list (index .Subcharts "serverless-ai") .Values.observed "serverless-ai") }}\n'
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: passed\n"
    )
    (root / "values.yaml").write_text(yaml.safe_dump({"check": check, "observed": observed, "serverless-ai": values or {}}))
    bucket = root / "bucket.yaml"  # the user's models bucket, merged under the subchart's values
    bucket.write_text(yaml.safe_dump({"serverless-ai": yaml.safe_load(MODELS_BUCKET.read_text())}))
    proc = run_tool(
        "helm", "template", "serverless-ai", str(root), "--namespace", "serverless-ai", "-f", str(bucket), check=False
    )
    if proc.returncode == 0:
        assert "name: passed" in proc.stdout
        return ""
    return proc.stderr


def profile_values(name: str) -> dict:
    return yaml.safe_load((CHART_DIR / f"values-{name}.yaml").read_text())


def test_check_knative_features(tmp_path):
    gpu = profile_values("gpu")
    err = run_check(tmp_path / "a", "sai.check.knativeFeatures", None, gpu)
    assert "Knative Serving is not installed" in err
    err = run_check(tmp_path / "b", "sai.check.knativeFeatures", KNATIVE_DEFAULT_FEATURES, gpu)
    for flag in ("podspec-nodeselector", "podspec-tolerations", "podspec-runtimeclassname"):
        assert f"kubernetes.{flag}" in err, flag
    assert "podspec-volumes-emptydir" not in err.split("Fix:")[0], "emptyDir is enabled by default"
    assert "k8s/overlays/gpu" in err and "kubectl -n knative-serving patch configmap config-features" in err
    # What k8s/overlays/gpu applies satisfies every profile.
    overlay = load_yaml_stream(run_tool("kubectl", "kustomize", str(REPO_ROOT / "k8s/overlays/gpu")).stdout)
    features = next(o for o in overlay if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "config-features")
    for i, profile in enumerate(("gpu", "knative", "kind")):
        assert run_check(tmp_path / f"c{i}", "sai.check.knativeFeatures", features, profile_values(profile)) == ""
    pvc = {"triton": {"mode": "knative"}, "modelRepository": {"source": "pvc"}}
    err = run_check(tmp_path / "d", "sai.check.knativeFeatures", KNATIVE_DEFAULT_FEATURES, pvc)
    assert "kubernetes.podspec-persistent-volume-claim" in err


def test_check_triton_owner(tmp_path):
    """Both modes name their Knative Service <release>-triton-predictor: a switch must wait until the
    other mode's one is gone, or KServe and Helm fight over it."""
    ksvc = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "serverless-ai-triton-predictor", "namespace": "serverless-ai"},
    }
    by_isvc = {
        **ksvc,
        "metadata": {
            **ksvc["metadata"],
            "ownerReferences": [
                {
                    "apiVersion": "serving.kserve.io/v1beta1",
                    "kind": "InferenceService",
                    "name": "serverless-ai-triton",
                    "uid": "0d5e3f5c-8d0a-4a8e-9a37-6a0f4f3f0c11",
                    "controller": True,
                }
            ],
        },
    }
    knative, kserve = {"triton": {"mode": "knative"}}, {"triton": {"mode": "kserve"}}
    assert "delete inferenceservice serverless-ai-triton" in run_check(tmp_path / "a", "sai.check.tritonOwner", by_isvc, knative)
    assert "delete ksvc serverless-ai-triton-predictor" in run_check(tmp_path / "b", "sai.check.tritonOwner", ksvc, kserve)
    assert run_check(tmp_path / "c", "sai.check.tritonOwner", by_isvc, kserve) == ""
    assert run_check(tmp_path / "d", "sai.check.tritonOwner", ksvc, knative) == ""
    assert run_check(tmp_path / "e", "sai.check.tritonOwner", None, kserve) == ""


def test_check_models_secret(tmp_path):
    """KServe reads endpoint/HTTPS/region from the Secret (annotations, else data keys), so the
    install checks the Secret and prints the exact annotate command."""
    b64 = lambda v: base64.b64encode(v.encode()).decode()  # noqa: E731
    creds = {"AWS_ACCESS_KEY_ID": b64("AKIA"), "AWS_SECRET_ACCESS_KEY": b64("secret")}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "data": creds,
        "metadata": {"name": "serverless-ai-models-s3", "namespace": "serverless-ai"},
    }
    minio = {"minio": {"enabled": True}}
    assert "Secret serverless-ai-models-s3 not found" in run_check(tmp_path / "a", "sai.check.modelsSecret", None, minio)
    err = run_check(tmp_path / "b", "sai.check.modelsSecret", secret, minio)
    assert (
        "kubectl -n serverless-ai annotate --overwrite secret serverless-ai-models-s3 "
        "serving.kserve.io/s3-endpoint=serverless-ai-minio.serverless-ai.svc.cluster.local:9000 "
        "serving.kserve.io/s3-region=us-east-1 serving.kserve.io/s3-usehttps=0"
    ) in err
    annotated = {
        **secret,
        "metadata": {
            **secret["metadata"],
            "annotations": {
                "serving.kserve.io/s3-endpoint": "serverless-ai-minio.serverless-ai.svc.cluster.local:9000",
                "serving.kserve.io/s3-usehttps": "0",
                "serving.kserve.io/s3-region": "us-east-1",
            },
        },
    }
    assert run_check(tmp_path / "c", "sai.check.modelsSecret", annotated, minio) == ""
    # Data keys with the env names work as well (s3/utils.go getEnvValue: annotation, then data).
    as_data = {
        **secret,
        "data": {
            **creds,
            "S3_ENDPOINT": b64("serverless-ai-minio.serverless-ai.svc.cluster.local:9000"),
            "S3_USE_HTTPS": b64("0"),
            "AWS_DEFAULT_REGION": b64("us-east-1"),
        },
    }
    assert run_check(tmp_path / "d", "sai.check.modelsSecret", as_data, minio) == ""
    # AWS itself: no endpoint, HTTPS on.
    aws = {
        **secret,
        "metadata": {
            **secret["metadata"],
            "annotations": {"serving.kserve.io/s3-usehttps": "1", "serving.kserve.io/s3-region": "us-east-1"},
        },
    }
    assert run_check(tmp_path / "e", "sai.check.modelsSecret", aws) == ""
    no_keys = {**annotated, "data": {"accessKey": b64("x")}}
    assert "needs the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in run_check(
        tmp_path / "f", "sai.check.modelsSecret", no_keys, minio
    )


def test_check_models_service_account(tmp_path):
    """With workload identity the ServiceAccount must exist; with an EKS role ARN on it, KServe reads
    the S3 settings from its annotations (kserve v0.20.0 service_account_credentials.go
    AwsIrsaAnnotationKey -> s3.BuildServiceAccountEnvs), so they are checked as on a Secret."""
    wi = {"modelRepository": {"s3": {"serviceAccountName": "models-reader"}}}
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "models-reader", "namespace": "serverless-ai"}}
    err = run_check(tmp_path / "a", "sai.check.modelsServiceAccount", None, wi)
    assert "ServiceAccount models-reader not found in namespace serverless-ai" in err
    # EKS Pod Identity: no annotation, KServe sets nothing from it; nothing to check.
    assert run_check(tmp_path / "b", "sai.check.modelsServiceAccount", sa, wi) == ""
    role = {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/models-reader"}
    irsa = {**sa, "metadata": {**sa["metadata"], "annotations": role}}
    err = run_check(tmp_path / "c", "sai.check.modelsServiceAccount", irsa, wi)
    assert (
        "kubectl -n serverless-ai annotate --overwrite serviceaccount models-reader "
        "serving.kserve.io/s3-region=us-east-1 serving.kserve.io/s3-usehttps=1"
    ) in err
    ok = {
        **sa,
        "metadata": {
            **sa["metadata"],
            "annotations": {**role, "serving.kserve.io/s3-region": "us-east-1", "serving.kserve.io/s3-usehttps": "1"},
        },
    }
    assert run_check(tmp_path / "d", "sai.check.modelsServiceAccount", ok, wi) == ""
    # Without KServe (knative mode) Triton reads S3 itself: only existence matters.
    knative = {**wi, "triton": {"mode": "knative"}}
    assert run_check(tmp_path / "e", "sai.check.modelsServiceAccount", irsa, knative) == ""


def test_cluster_checks_skip_without_a_cluster():
    """`helm template` has no cluster: lookup answers nothing, and the checks must not fail on that."""
    assert render_chart([CHART_DIR / "values-gpu.yaml"])


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
        top = re.sub(r"\.labels\..*$", ".labels", top)  # a map of labels, documented as a whole
        assert f"`{path}`" in readme or f"`{top}`" in readme, f"{path} missing from charts/serverless-ai/README.md"

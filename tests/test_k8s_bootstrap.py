"""k8s/bootstrap.sh beyond its pins (tests/test_k8s_stack.py): CRDs are Established before the
manifests that hold resources of their kinds, the user's values files reach every helm call, and a
second run on the same cluster succeeds (no server-side apply conflict) without KServe ever seeing
upstream's Istio setting.

No cluster here: the script's --dry-run prints each command it would run, and a small model of
the API server's server-side apply field ownership replays them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import MODELS_BUCKET

from sai.k8s.helm_kubectl import REPO_ROOT, load_yaml_stream, render_chart, run_tool

BOOTSTRAP = BOOTSTRAP_SH = REPO_ROOT / "k8s/bootstrap.sh"

# What the release manifests write to objects that another bootstrap step writes as well: KServe
# v0.20.0's kserve.yaml carries config/configmap/inferenceservice.yaml, whose ConfigMap has these
# data keys (each a JSON document; "ingress" is the one the bootstrap changes).
UPSTREAM_MANIFESTS = {
    "kserve.yaml": {
        ("ConfigMap", "kserve", "inferenceservice-config"): {
            f"data.{key}": f"upstream {key}"
            for key in (
                "_example",
                "explainers",
                "storageInitializer",
                "credentials",
                "ingress",
                "logger",
                "batcher",
                "agent",
                "router",
                "deploy",
                "metricsAggregator",
                "localModel",
                "security",
                "inferenceService",
                "opentelemetryCollector",
                "autoscaler",
            )
        }
    },
}


# Release manifests that hold resources of custom kinds, and the CRDs those need Established first:
# kubectl maps every object of a manifest before it applies any (kubectl kubernetes-1.34.5
# pkg/cmd/apply/apply.go: GetObjects, then the apply loop), so a resource whose CRD arrives in the
# same apply fails with "no matches for kind", and one whose CRD is not yet Established may too.
INSTANTIATES = {
    "serving-core.yaml": {
        "images.caching.internal.knative.dev",  # serving knative-v1.23.0 config/core/999-cache.yaml
        "certificates.networking.internal.knative.dev",  # config/core/300-knativecertificate.yaml
    },
    # kserve v0.20.0 config/overlays/all -> config/base -> ../storagecontainers/default.yaml
    "kserve.yaml": {"clusterstoragecontainers.serving.kserve.io"},
    # kserve v0.20.0 install/v0.20.0/kserve-cluster-resources.yaml: ClusterServingRuntime (v1alpha1),
    # LLMInferenceServiceConfig (v1alpha2)
    "kserve-cluster-resources.yaml": {
        "clusterservingruntimes.serving.kserve.io",
        "llminferenceserviceconfigs.serving.kserve.io",
    },
}
_KSERVE_CRDS = {  # kserve v0.20.0 hack/release/generate-install.sh: kustomize build config/crd/full
    f"{name}.serving.kserve.io"
    for name in (
        "clusterservingruntimes",
        "clusterstoragecontainers",
        "inferencegraphs",
        "inferenceservices",
        "servingruntimes",
        "trainedmodels",
    )
}
DEFINES = {
    # serving knative-v1.23.0 hack/generate-yamls.sh: config/core/300-resources/ + 300-imagecache.yaml
    "serving-crds.yaml": {
        "certificates.networking.internal.knative.dev",
        "clusterdomainclaims.networking.internal.knative.dev",
        "ingresses.networking.internal.knative.dev",
        "serverlessservices.networking.internal.knative.dev",
        "configurations.serving.knative.dev",
        "domainmappings.serving.knative.dev",
        "revisions.serving.knative.dev",
        "routes.serving.knative.dev",
        "services.serving.knative.dev",
        "metrics.autoscaling.internal.knative.dev",
        "podautoscalers.autoscaling.internal.knative.dev",
        "images.caching.internal.knative.dev",
    },
    "kserve-crds.yaml": _KSERVE_CRDS,
    # kserve.yaml has these and ten more (config/default -> ../crd: llmisvc, localmodel, llm-d)
    "kserve.yaml": _KSERVE_CRDS | {"llminferenceserviceconfigs.serving.kserve.io", "llminferenceservices.serving.kserve.io"},
}


def manifest_of(line: str) -> str | None:
    """The release manifest a dry-run line applies (its file name), if any."""
    if m := re.match(r"\+ (?:kubectl apply .*-f |curl -fsSL )(https://\S+)", line):
        return m.group(1).rsplit("/", 1)[1]
    return None


def crd_order_problems(out: str) -> list[str]:
    """Applies of a manifest in INSTANTIATES before each CRD it needs was applied by an earlier
    manifest and then waited for with `kubectl wait --for=condition=Established crd/NAME`."""
    applied, established, problems = set(), set(), []
    for line in out.splitlines():
        if manifest := manifest_of(line):
            problems += [
                f"{manifest} before {crd} is Established" for crd in sorted(INSTANTIATES.get(manifest, set()) - established)
            ]
            applied |= DEFINES.get(manifest, set())
        elif line.startswith("+ kubectl wait --for=condition=Established "):
            established |= set(re.findall(r" crd/(\S+)", line)) & applied
    return problems


def dry_run(*args: str) -> str:
    """The dry run's commands; with MODELS_BUCKET as the user's values file unless args name one."""
    mine = [] if {"--values", "-f"} & set(args) else ["--values", str(MODELS_BUCKET)]
    return subprocess.run(["bash", str(BOOTSTRAP), "--dry-run", *mine, *args], capture_output=True, text=True, check=True).stdout


class Conflict(Exception):
    pass


class FieldOwnership:
    """Server-side apply's ownership rules (Kubernetes docs, "Server-Side Apply": Conflicts,
    Managers): an apply that sets a field to a value other than the live one, while another
    manager owns that field, is refused unless forced; forcing, or an update (kubectl patch,
    client-side apply), makes the writer the field's only owner. Same value: owners share it."""

    def __init__(self):
        self.fields: dict[tuple, tuple[str, set[str]]] = {}  # (object, path) -> (value, owners)
        self.history: list[tuple[tuple, str, str]] = []  # (object, path, value) after each write

    def write(self, manager: str, obj: tuple, values: dict[str, str], apply: bool, force: bool) -> None:
        me = f"{manager}/{'Apply' if apply else 'Update'}"
        for path, value in values.items():
            live, owners = self.fields.get((obj, path), (None, set()))
            others = owners - {me}
            if value == live:
                self.fields[(obj, path)] = (live, owners | {me})
                continue
            if apply and others and not force:
                raise Conflict(f"{me} changes {obj} {path}, owned by {sorted(others)}")
            self.fields[(obj, path)] = (value, {me})
            self.history.append((obj, path, value))


def objects_of(line: str) -> list[tuple[tuple, dict[str, str]]]:
    """(kind, namespace, name) and data fields each kubectl write in a dry-run line touches."""
    if m := re.search(r"-k (\S+)", line):
        docs = load_yaml_stream(run_tool("kubectl", "kustomize", m.group(1)).stdout)
    elif "<<< " in line:
        docs = [json.loads(line.split("<<< ", 1)[1])]
    elif line.startswith("+ curl "):  # curl URL | python -m sai.k8s.kserve_ingress K=V... | kubectl apply -f -
        edits = re.search(r"-m sai\.k8s\.kserve_ingress ((?:\w+=\S+ ?)+)\|", line)
        assert edits, f"a manifest piped to kubectl unchanged: {line}"
        return [
            (
                obj,
                {
                    path: f"{value}, {edits.group(1).strip()}" if path == "data.ingress" else value
                    for path, value in fields.items()
                },
            )
            for obj, fields in UPSTREAM_MANIFESTS.get(manifest_of(line), {}).items()
        ]
    elif m := re.search(r"-f (https://\S+)", line):
        return list(UPSTREAM_MANIFESTS.get(manifest_of(line), {}).items())
    else:
        raise AssertionError(f"cannot tell what this writes: {line}")
    return [
        (
            (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]),
            {f"data.{k}": v for k, v in (d.get("data") or {}).items()},
        )
        for d in docs
    ]


def replay(out: str, cluster: FieldOwnership) -> int:
    """Every kubectl write of one dry run against `cluster`; returns how many were replayed."""
    writes = 0
    for line in out.splitlines():
        piped_apply = line.startswith("+ curl ") and "| kubectl apply " in line
        if not (line.startswith("+ kubectl") or piped_apply) or re.search(r"\+ kubectl .*(wait|get|create) ", line):
            continue  # reads; Secrets are created only when missing (create_secret returns early)
        if m := re.match(r"\+ kubectl -n (\S+) patch configmap (\S+) \((\w+)\.", line):
            obj = ("ConfigMap", m.group(1), m.group(2))
            cluster.write("kubectl-patch", obj, {f"data.{m.group(3)}": f"patched by {line}"}, apply=False, force=False)
        else:
            assert " apply " in line, line
            server_side = "--server-side" in line
            manager = re.search(r"--field-manager=(\S+)", line)
            name = manager.group(1) if manager else ("kubectl" if server_side else "kubectl-client-side-apply")
            for obj, values in objects_of(line):
                cluster.write(name, obj, values, apply=server_side, force="--force-conflicts" in line)
        writes += 1
    return writes


@pytest.mark.parametrize("profile", ["gpu", "knative"])
def test_bootstrap_runs_twice(profile):
    """A second run on the same cluster (an upgrade, a retry after a failed step) must not stop at
    a server-side apply conflict: KServe's kserve.yaml and the bootstrap's own change of its
    inferenceservice-config both write .data.ingress."""
    cluster = FieldOwnership()
    out = dry_run("--profile", profile)
    assert replay(out, cluster) >= 5
    assert replay(out, cluster) >= 5
    assert replay(out, cluster) >= 5
    if profile == "gpu":
        value, owners = cluster.fields[(("ConfigMap", "kserve", "inferenceservice-config"), "data.ingress")]
        assert "disableIstioVirtualHost=true" in value and owners == {"kubectl/Apply"}


def test_kserve_never_sees_istio_on_a_rerun():
    """Between applying upstream's kserve.yaml (disableIstioVirtualHost: false) and changing the key
    afterwards, a running KServe controller reconciles with Istio on and creates an ExternalName
    Service to istio-system. Every write of the key after the first must keep it set."""
    ingress = (("ConfigMap", "kserve", "inferenceservice-config"), "data.ingress")
    cluster = FieldOwnership()
    # An install made by an older bootstrap: the key set afterwards by the serverless-ai manager.
    cluster.write("kubectl", ingress[0], {"data.ingress": "upstream ingress"}, apply=True, force=False)
    cluster.write("serverless-ai", ingress[0], {"data.ingress": "disableIstioVirtualHost=true"}, apply=True, force=True)
    cluster.history.clear()
    for _ in range(2):
        replay(dry_run("--profile", "gpu"), cluster)
    values = [value for obj, path, value in cluster.history if (obj, path) == ingress]
    assert values and all("disableIstioVirtualHost=true" in v for v in values), values


def test_the_kserve_manifest_edit(tmp_path):
    """sai.k8s.kserve_ingress on KServe v0.20.0's own text: only the ingress key changes, every
    other document and entry passes through; a renamed key or a missing ConfigMap stops it."""
    from sai.k8s.kserve_ingress import ManifestError, set_ingress

    upstream = (REPO_ROOT / "tests/data/kserve-v0.20.0-excerpt.yaml").read_text()
    out = set_ingress(upstream, {"disableIstioVirtualHost": True})
    before, after = load_yaml_stream(upstream), load_yaml_stream(out)
    assert [d["kind"] for d in after] == ["ConfigMap", "ClusterStorageContainer"] and after[1] == before[1]
    assert out.endswith(upstream.split("---\n", 1)[1]), "other documents are passed through as they came"
    ingress, was = (json.loads(d[0]["data"]["ingress"]) for d in (after, before))
    assert was["disableIstioVirtualHost"] is False and ingress == {**was, "disableIstioVirtualHost": True}
    assert after[0]["data"]["deploy"] == before[0]["data"]["deploy"] and after[0]["metadata"] == before[0]["metadata"]
    with pytest.raises(ManifestError, match="no disableIstioVirtualhost"):
        set_ingress(upstream, {"disableIstioVirtualhost": True})
    with pytest.raises(ManifestError, match="found 0"):
        set_ingress(upstream.split("---\n", 1)[1], {"disableIstioVirtualHost": True})
    cli = subprocess.run(
        [sys.executable, "-m", "sai.k8s.kserve_ingress", "disableIstioVirtualHost=true"],
        input=upstream,
        capture_output=True,
        text=True,
        check=True,
    )
    assert cli.stdout == out


@pytest.mark.parametrize("profile", ["kind", "gpu", "knative"])
def test_crds_are_established_before_their_resources(profile):
    """On a fresh cluster, kserve.yaml (its ClusterStorageContainer) and serving-core.yaml (Image,
    Certificate) fail unless their CRDs were applied before and are Established."""
    out = dry_run("--profile", profile)
    assert not crd_order_problems(out)
    applied = {manifest_of(line) for line in out.splitlines()} & set(INSTANTIATES)
    assert applied == ({"serving-core.yaml"} if profile == "knative" else {"serving-core.yaml", "kserve.yaml"})


@pytest.mark.parametrize("profile", ["kind", "gpu"])
def test_the_chart_needs_nothing_from_kserves_cluster_resources(profile):
    """kserve-cluster-resources.yaml (upstream's ClusterServingRuntimes and LLM configs) is not
    applied: it went through failurePolicy=Fail webhooks once, with no retry, right after KServe's
    deployments were Available, when their endpoints may still lag. The chart does not need it:
    its InferenceService names a ServingRuntime the chart renders in the same namespace, which
    KServe looks up before any cluster runtime (kserve v0.20.0 pkg/controller/v1beta1/
    inferenceservice/utils/utils.go GetServingRuntime), and an s3:// model matches the
    ClusterStorageContainer "default" that kserve.yaml itself carries."""
    out = dry_run("--profile", profile)
    assert "kserve-cluster-resources.yaml" not in out
    assert "+ curl -fsSL https://github.com/kserve/kserve/releases/download/v0.20.0/kserve.yaml " in out
    values = [REPO_ROOT / f"charts/serverless-ai/values-{profile}.yaml", MODELS_BUCKET]
    objs = render_chart(values)
    isvc = next(o for o in objs if o["kind"] == "InferenceService")
    runtime = isvc["spec"]["predictor"]["model"]["runtime"]
    assert ("ServingRuntime", runtime, isvc["metadata"]["namespace"]) in {
        (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in objs
    }
    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    container = next(
        d
        for d in load_yaml_stream((REPO_ROOT / "tests/data/kserve-v0.20.0-excerpt.yaml").read_text())
        if d["kind"] == "ClusterStorageContainer"
    )
    # pvc:// is mounted by KServe's pod webhook without a storage container (kind profile).
    assert uri.startswith("pvc://") or any(
        uri.startswith(f.get("prefix", "\0")) for f in container["spec"]["supportedUriFormats"]
    )


def test_the_crd_order_check_can_fail():
    kserve = "https://github.com/kserve/kserve/releases/download/v0.20.0"
    knative = "https://github.com/knative/serving/releases/download/knative-v1.23.0"
    one_step = f"+ kubectl apply --server-side --force-conflicts -f {kserve}/kserve.yaml"  # the bootstrap until i24c
    assert crd_order_problems(one_step) == ["kserve.yaml before clusterstoragecontainers.serving.kserve.io is Established"]
    no_wait = f"+ kubectl apply -f {knative}/serving-crds.yaml\n+ kubectl apply -f {knative}/serving-core.yaml"
    assert len(crd_order_problems(no_wait)) == 2
    wait_first = f"+ kubectl wait --for=condition=Established crd/images.caching.internal.knative.dev\n{no_wait}"
    assert len(crd_order_problems(wait_first)) == 2, "a wait before the CRDs are applied counts for nothing"


@pytest.mark.parametrize("profile", ["kind", "gpu", "knative"])
def test_the_prerequisite_fixes_are_the_bootstraps_commands(profile):
    """`sai cluster install` prints these fixes when Knative or KServe is missing: the same
    commands, in the same order, as the bootstrap runs, Kourier and the cluster settings included;
    on kind, where the bootstrap also fits Kourier's requests to the node, the bootstrap."""
    from sai.cluster.prereqs import BOOTSTRAP, FIX_KSERVE, fix_knative

    out = dry_run("--profile", profile)
    lines = [line[2:] for line in out.splitlines() if line.startswith("+ ")]
    fixes = [fix_knative(profile)] + ([FIX_KSERVE] if profile != "knative" else [])
    if profile == "kind":
        assert fixes[0] == BOOTSTRAP.format(profile="kind") == f"{BOOTSTRAP_SH} --profile kind"
        fixes = fixes[1:]
    for fix in fixes:
        steps = fix.split(" && ")
        start = lines.index(steps[0])
        assert lines[start : start + len(steps)] == steps
        assert not crd_order_problems("\n".join(f"+ {step}" for step in steps))
    if profile == "gpu":
        assert any("kourier.yaml" in step for step in fix_knative(profile).split(" && "))
        assert fix_knative(profile).endswith(f"-k {REPO_ROOT}/k8s/overlays/gpu")


def test_the_fixes_work_from_any_directory(tmp_path):
    """The fixes name the checkout's files by absolute path (a user runs them wherever the error
    found them): KServe's manifest edit runs from another directory."""
    from sai.cluster.prereqs import BOOTSTRAP, FIX_KSERVE, fix_knative, fix_overlay

    texts = [FIX_KSERVE, BOOTSTRAP, fix_overlay("kind"), *(fix_knative(p) for p in ("kind", "gpu", "knative"))]
    paths = [w for text in texts for w in text.split() if re.search(r"(^|/)(k8s|\.venv)/", w)]
    assert paths and all(w.startswith(f"{REPO_ROOT}/") and Path(w).exists() for w in paths), paths
    edit = re.search(r"\| (\S+/python -m sai\.k8s\.kserve_ingress \S+) \|", FIX_KSERVE).group(1)
    upstream = (REPO_ROOT / "tests/data/kserve-v0.20.0-excerpt.yaml").read_text()
    proc = subprocess.run(edit, shell=True, input=upstream, capture_output=True, text=True, cwd=tmp_path)
    from sai.k8s.kserve_ingress import set_ingress

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == set_ingress(upstream, {"disableIstioVirtualHost": True})


# Release manifests -> the name docs/kubernetes.md gives them.
MANIFEST_NAMES = {
    "cert-manager.yaml": "cert-manager",
    "serving-crds.yaml": "Knative",
    "serving-core.yaml": "Knative",
    "kourier.yaml": "Kourier",
    "kserve-crds.yaml": "KServe",
    "kserve.yaml": "KServe",
}


def apply_sides(out: str) -> dict[str, set[str]]:
    """{"client-side": names, "server-side": names} of the release manifests a dry run applies."""
    sides: dict[str, set[str]] = {"client-side": set(), "server-side": set()}
    for line in out.splitlines():
        if (manifest := manifest_of(line)) and "kubectl apply" in line:
            sides["server-side" if "--server-side" in line else "client-side"].add(MANIFEST_NAMES[manifest])
    return sides


def rerun_sentences(doc: str) -> dict[str, str]:
    """The sentences of the docs' "Running it again" paragraph that say client-side / server-side."""
    paragraph = " ".join(doc.split("Running it again is safe", 1)[1].split("Later changes", 1)[0].split())
    return {side: " ".join(s for s in re.split(r"(?<=\.) ", paragraph) if side in s) for side in ("client-side", "server-side")}


def test_the_docs_say_which_applies_are_client_side():
    """docs/kubernetes.md said every apply of the bootstrap was server-side; the releases of
    cert-manager, Knative and Kourier are applied client-side (their own install docs' way)."""
    sides = apply_sides(dry_run("--profile", "gpu"))
    assert sides == {"client-side": {"cert-manager", "Knative", "Kourier"}, "server-side": {"KServe"}}
    said = rerun_sentences((REPO_ROOT / "docs/kubernetes.md").read_text())
    for side, names in sides.items():
        assert all(name in said[side] for name in names), (side, said[side])
    assert not any(name in said["client-side"] for name in sides["server-side"])
    # The check can fail: the sentence the docs had until i24d.
    old = "Running it again is safe: every apply is server-side, and ... Later changes"
    assert not all(name in rerun_sentences(old)["client-side"] for name in sides["client-side"])


def test_ownership_model_refuses_what_the_api_server_refuses():
    """The model used above can fail: an unforced apply over another manager's field is refused."""
    cluster = FieldOwnership()
    obj = ("ConfigMap", "kserve", "inferenceservice-config")
    cluster.write("kubectl", obj, {"data.ingress": "a"}, apply=True, force=False)
    cluster.write("kubectl-patch", obj, {"data.ingress": "b"}, apply=False, force=False)
    with pytest.raises(Conflict):
        cluster.write("kubectl", obj, {"data.ingress": "a"}, apply=True, force=False)
    cluster.write("kubectl", obj, {"data.ingress": "a"}, apply=True, force=True)
    cluster.write("other", obj, {"data.ingress": "a"}, apply=True, force=False)  # same value: shared


def helm_line(out: str, release: str = "serverless-ai") -> str:
    return next(line for line in out.splitlines() if line.startswith(f"+ helm upgrade --install {release} "))


def test_values_files_reach_helm_and_the_gateway_timeouts(tmp_path):
    """--values/-f (repeatable) go to helm after the profile's, in order, and the gateway's
    timeouts follow the chart's as those files set them."""
    bucket = tmp_path / "bucket.yaml"
    bucket.write_text(yaml.safe_dump({"modelRepository": {"s3": {"uri": "s3://team-a-models/serverless-ai"}}}))
    faster = tmp_path / "faster.yaml"
    faster.write_text(yaml.safe_dump({"timeouts": {"tritonColdStartSeconds": 300}}))
    out = dry_run("--profile", "gpu", "--values", str(bucket), "-f", str(faster))
    line = helm_line(out)
    files = re.findall(r" -f (\S+)", line)
    assert files == [str(REPO_ROOT / "charts/serverless-ai/values-gpu.yaml"), str(bucket), str(faster)]
    assert "timeouts: function 315s, gateway upstream 330s, gateway server 345s" in out
    assert "--set gateway.upstreamTimeout=330s" in out
    # Relative paths work from anywhere: they are made absolute before the script changes directory.
    rel = subprocess.run(
        ["bash", str(BOOTSTRAP), "--dry-run", "--profile", "gpu", "--values", "bucket.yaml"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert f" -f {bucket}" in helm_line(rel)
    missing = subprocess.run(
        ["bash", str(BOOTSTRAP), "--dry-run", "--values", str(tmp_path / "nope.yaml")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert "--values" in subprocess.run(["bash", str(BOOTSTRAP), "--help"], capture_output=True, text=True).stdout


def test_gpu_operator_on_nodes_that_bring_their_own_driver():
    """--gpu-operator-driver=false installs the operator without its driver DaemonSet
    (driver.enabled, gpu-operator v25.10.1 deployments/gpu-operator/values.yaml), which would
    otherwise run beside the driver of the node image; the default keeps the operator's driver."""

    def operator_line(out: str) -> str:
        return next(line for line in out.splitlines() if line.startswith("+ helm upgrade --install gpu-operator "))

    own = operator_line(dry_run("--profile", "gpu", "--gpu-operator", "--gpu-operator-driver=false"))
    assert "--set driver.enabled=false" in own and own.endswith("--wait --timeout 15m")
    assert "driver.enabled" not in operator_line(dry_run("--profile", "gpu", "--gpu-operator"))
    assert "driver.enabled" not in operator_line(dry_run("--profile", "gpu", "--gpu-operator", "--gpu-operator-driver=true"))
    for wrong in (["--gpu-operator-driver=false"], ["--gpu-operator", "--gpu-operator-driver=no"]):
        proc = subprocess.run(
            ["bash", str(BOOTSTRAP), "--dry-run", "--profile", "gpu", "--values", str(MODELS_BUCKET), *wrong],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and "+ " not in proc.stdout, proc.stderr
    assert (
        "--gpu-operator-driver=false" in subprocess.run(["bash", str(BOOTSTRAP), "--help"], capture_output=True, text=True).stdout
    )
    assert "--gpu-operator-driver=false" in (REPO_ROOT / "docs/kubernetes.md").read_text()


@pytest.mark.parametrize("profile", ["gpu", "knative"])
def test_no_bucket_stops_before_the_first_command(profile):
    """The chart has no default models bucket: without the user's values file the bootstrap stops
    at once (reading the chart's timeouts renders it), with the value to set, before any change."""
    proc = subprocess.run(["bash", str(BOOTSTRAP), "--dry-run", "--profile", profile], capture_output=True, text=True)
    assert proc.returncode != 0 and "modelRepository.s3.uri is empty" in proc.stderr
    assert "+ " not in proc.stdout and "==>" not in proc.stderr


def test_without_the_venv_it_stops_before_any_step(tmp_path):
    """The KServe step edits the manifest with the repository's Python: a checkout without
    `make setup` is told so at once, not after cert-manager and Knative are installed."""
    (tmp_path / "k8s").mkdir()
    shutil.copy(BOOTSTRAP, tmp_path / "k8s/bootstrap.sh")
    proc = subprocess.run(["bash", str(tmp_path / "k8s/bootstrap.sh"), "--profile", "gpu"], capture_output=True, text=True)
    assert proc.returncode == 1 and "run `make setup` first" in proc.stderr and not proc.stdout

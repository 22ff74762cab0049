"""`sai cluster install`'s prerequisite checks on recorded objects: the upstream CRDs
($SAI_CRDS_DIR), Knative's ConfigMaps as `kubectl kustomize k8s/overlays/...` renders them (what
the bootstrap applies), and tests/cluster_objects/prereqs.yaml (Deployments, Namespaces, Nodes)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from cluster_recorded import Recorded, load

from sai.cluster import prereqs
from sai.cluster.project import REPO_ROOT, crds_dir, load_yaml_stream, run_tool


@pytest.fixture(scope="module")
def crds() -> list[dict]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out = []
    for f in sorted(Path(crds_dir()).glob("*.yaml")):
        out += [d for d in yaml.load_all(f.read_text(), Loader=loader) if d and d.get("kind") == "CustomResourceDefinition"]
    assert any(c["metadata"]["name"] == "inferenceservices.serving.kserve.io" for c in out)
    return out


def overlay_configmaps(profile: str) -> list[dict]:
    docs = load_yaml_stream(run_tool("kubectl", "kustomize", str(REPO_ROOT / prereqs.overlay(profile))).stdout)
    return [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("namespace") == "knative-serving"]


def gathered(crds, profile="kind", drop=(), edit=None):
    objs = [
        o
        for o in crds + load("prereqs.yaml") + overlay_configmaps(profile)
        if f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" not in drop
    ]
    objs = copy.deepcopy(objs)
    if edit:
        edit(objs)
    return prereqs.gather(Recorded(objs), profile, "serverless-ai")


def find(objs, kind, name):
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


@pytest.mark.parametrize("profile", ["kind", "gpu", "knative"])
def test_everything_in_place_passes(crds, profile):
    assert prereqs.check(**gathered(crds, profile)) == []


def test_missing_kserve_names_the_install_command(crds):
    problems = prereqs.check(**gathered(crds, drop={"CustomResourceDefinition//inferenceservices.serving.kserve.io"}))
    assert [p.check for p in problems] == ["KServe"]
    assert "kserve/releases/download/v0.20.0/kserve.yaml" in problems[0].fix
    # the knative profile does not need KServe
    assert (
        prereqs.check(**gathered(crds, "knative", drop={"CustomResourceDefinition//inferenceservices.serving.kserve.io"})) == []
    )


def test_wrong_versions_are_named(crds):
    def edit(objs):
        find(objs, "Deployment", "controller")["metadata"]["labels"]["app.kubernetes.io/version"] = "1.21.0"
        find(objs, "Deployment", "kserve-controller-manager")["spec"]["template"]["spec"]["containers"][0]["image"] = (
            "kserve/kserve-controller:v0.15.2"
        )
        find(objs, "Deployment", "gateway")["metadata"]["labels"]["chart"] = "openfaas-14.2.0"

    text = "\n".join(map(str, prereqs.check(**gathered(crds, edit=edit))))
    assert "version 1.21.0 installed, 1.23.0 expected" in text
    assert "controller image tag v0.15.2, v0.20.0 expected" in text
    assert "gateway from chart openfaas-14.2.0, openfaas-15.0.6 expected" in text


@pytest.mark.parametrize("profile", ["kind", "gpu"])
def test_missing_knative_and_openfaas(crds, profile):
    drop = {"CustomResourceDefinition//services.serving.knative.dev", "Deployment/openfaas/gateway"}
    problems = prereqs.check(**gathered(crds, profile, drop=drop))
    assert {p.check for p in problems} == {"Knative Serving", "OpenFaaS"}
    knative = next(p.fix for p in problems if p.check == "Knative Serving")
    if profile == "kind":  # the bootstrap also fits Kourier's requests to the kind node
        assert knative == f"{REPO_ROOT}/k8s/bootstrap.sh --profile kind"
    else:  # Knative, its Kourier ingress and our settings in its ConfigMaps
        assert "serving-core.yaml" in knative and "kourier.yaml" in knative
        assert knative.endswith(f"-k {REPO_ROOT}/k8s/overlays/gpu")
    assert any("--version 15.0.6" in p.fix for p in problems)


def test_knative_settings_and_namespaces_point_at_the_overlay(crds):
    def edit(objs):
        cm = find(objs, "ConfigMap", "config-features")
        del cm["data"]["kubernetes.podspec-nodeselector"]
        find(objs, "ConfigMap", "config-autoscaler")["data"]["enable-scale-to-zero"] = "false"

    problems = prereqs.check(**gathered(crds, "gpu", drop={"Namespace//openfaas-fn"}, edit=edit))
    text = "\n".join(map(str, problems))
    assert "kubernetes.podspec-nodeselector='enabled' (has None)" in text
    assert "enable-scale-to-zero='true' (has 'false')" in text
    assert "namespace openfaas-fn does not exist" in text
    assert all(p.fix.endswith(f"-k {REPO_ROOT}/k8s/overlays/gpu") for p in problems)


def test_knative_defaults_count(crds):
    """Knative's own defaults satisfy what they already provide (emptyDir volumes, scale to zero)."""

    def edit(objs):
        del find(objs, "ConfigMap", "config-features")["data"]["kubernetes.podspec-volumes-emptydir"]
        del find(objs, "ConfigMap", "config-autoscaler")["data"]["enable-scale-to-zero"]

    assert prereqs.check(**gathered(crds, edit=edit)) == []


def test_gpu_needed_only_by_gpu_profiles(crds):
    drop = {"Node//gpu-node-1"}
    assert prereqs.check(**gathered(crds, "kind", drop=drop)) == []
    for profile in ("gpu", "knative"):
        problems = prereqs.check(**gathered(crds, profile, drop=drop))
        assert [p.check for p in problems] == ["GPU"]
        assert "--gpu-operator" in problems[0].fix and "--skip-gpu-check" in problems[0].fix


def test_required_settings_come_from_the_base_overlay():
    want = prereqs.required_knative_settings()
    assert want["config-autoscaler"] == {"enable-scale-to-zero": "true", "allow-zero-initial-scale": "true"}
    assert want["config-features"]["kubernetes.podspec-persistent-volume-claim"] == "enabled"


def test_unavailable_deployments_point_at_describe(crds):
    def edit(objs):
        for name in ("gateway", "activator"):
            find(objs, "Deployment", name)["status"]["conditions"][0]["status"] = "False"

    text = "\n".join(map(str, prereqs.check(**gathered(crds, edit=edit))))
    assert "deployment openfaas/gateway is not Available\n    fix: kubectl -n openfaas describe deployment gateway" in text
    assert "deployment knative-serving/activator is not Available" in text

"""k8s/bootstrap.sh beyond its pins (tests/test_k8s_stack.py): the user's values files reach
every helm call, and a second run on the same cluster succeeds (no server-side apply conflict).

No cluster here: the script's --dry-run prints each command it would run, and a small model of
the API server's server-side apply field ownership replays them."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from sai.k8s.helm_kubectl import REPO_ROOT, load_yaml_stream, run_tool

BOOTSTRAP = REPO_ROOT / "k8s/bootstrap.sh"

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


def dry_run(*args: str) -> str:
    return subprocess.run(["bash", str(BOOTSTRAP), "--dry-run", *args], capture_output=True, text=True, check=True).stdout


class Conflict(Exception):
    pass


class FieldOwnership:
    """Server-side apply's ownership rules (Kubernetes docs, "Server-Side Apply": Conflicts,
    Managers): an apply that sets a field to a value other than the live one, while another
    manager owns that field, is refused unless forced; forcing, or an update (kubectl patch,
    client-side apply), makes the writer the field's only owner. Same value: owners share it."""

    def __init__(self):
        self.fields: dict[tuple, tuple[str, set[str]]] = {}  # (object, path) -> (value, owners)

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


def objects_of(line: str) -> list[tuple[tuple, dict[str, str]]]:
    """(kind, namespace, name) and data fields each kubectl write in a dry-run line touches."""
    if m := re.search(r"-k (\S+)", line):
        docs = load_yaml_stream(run_tool("kubectl", "kustomize", m.group(1)).stdout)
    elif "<<< " in line:
        docs = [json.loads(line.split("<<< ", 1)[1])]
    elif m := re.search(r"-f (https://\S+)", line):
        known = UPSTREAM_MANIFESTS.get(m.group(1).rsplit("/", 1)[1], {})
        return list(known.items())
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
        if not line.startswith("+ kubectl") or re.search(r" (wait|get|create) ", line):
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
        assert "disableIstioVirtualHost=true" in value, "the last write is the bootstrap's, every run"
        assert owners == {"serverless-ai/Apply"}


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

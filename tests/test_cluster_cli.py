"""`sai cluster` on the command line: help, argument handling, the mandatory kubeconfig, install's
Helm invocation rendered offline (--dry-run, no cluster), and the commands end to end against the
recorded API objects served over HTTP (tests/cluster_recorded.py)."""

from __future__ import annotations

from datetime import UTC

import pytest
import yaml
from cluster_recorded import WOKEN_POD, WOKEN_POD_PHASES, RecordedAPIServer, load
from helpers import MODELS_BUCKET

from sai.cli import main


@pytest.fixture(autouse=True)
def no_ambient_kubeconfig(monkeypatch, tmp_path):
    """No $KUBECONFIG and an empty home: only what a test passes counts."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("OPENFAAS_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def unreachable_kubeconfig(tmp_path):
    """A cluster address nothing listens on: any attempt to contact it fails loudly."""
    path = tmp_path / "unreachable.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["cluster"],
        ["cluster", "install"],
        ["cluster", "status"],
        ["cluster", "wait"],
        ["cluster", "coldstart"],
        ["cluster", "models"],
        ["cluster", "models", "push"],
        ["cluster", "uninstall"],
    ],
)
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sai " + " ".join(argv))
    if argv[-1] in ("install", "status", "wait", "coldstart", "uninstall"):
        assert "--kubeconfig FILE" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["cluster", "install", "--profile", "laptop"],
        ["cluster", "status", "--bogus"],
        ["cluster", "wait", "--timeout", "soon"],
        ["cluster", "models", "push", "--profile", "x"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


@pytest.mark.parametrize(
    "command", [["status"], ["wait"], ["install", "--dry-run"], ["uninstall"], ["coldstart", "--gateway", "http://gw"]]
)
def test_no_kubeconfig_is_a_clear_error(command, capsys):
    assert main(["cluster", *command]) == 2
    err = capsys.readouterr().err
    assert "no kubeconfig" in err and "never falls back to localhost:8080" in err and "--kubeconfig" in err


def test_kubeconfig_env_and_flag(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert main(["cluster", "status"]) == 2
    assert "$KUBECONFIG" in capsys.readouterr().err
    empty = tmp_path / "empty.kubeconfig"
    empty.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    assert main(["cluster", "status", "--kubeconfig", str(empty)]) == 2
    assert "no current-context" in capsys.readouterr().err


def test_unreachable_api_server_is_one_line_exit_5(tmp_path, capsys):
    kc = unreachable_kubeconfig(tmp_path)
    assert main(["cluster", "status", "--kubeconfig", str(kc)]) == 5
    err = capsys.readouterr().err
    assert "127.0.0.1', port=9" in err or "127.0.0.1:9" in err
    assert "Traceback" not in err


def test_install_dry_run_renders_offline(tmp_path, capsys):
    kc = unreachable_kubeconfig(tmp_path)
    extra = tmp_path / "mine.yaml"
    extra.write_text("triton:\n  maxReplicas: 3\n")
    assert (
        main(["cluster", "install", "--profile", "kind", "-f", str(extra), "--kubeconfig", str(kc), "--wait", "--dry-run"]) == 0
    )
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("# would run (no cluster contacted): helm upgrade --install serverless-ai ")
    assert f"-f {extra}" in first and first.index("values-kind.yaml") < first.index(str(extra))
    assert f"--kubeconfig {kc}" in first and "--wait --timeout 10m" in first
    objs = [d for d in yaml.safe_load_all(out) if d]
    isvc = next(o for o in objs if o["kind"] == "InferenceService")
    assert isvc["metadata"]["name"] == "serverless-ai-triton"
    assert isvc["spec"]["predictor"]["maxReplicas"] == 3  # the user's file wins over the profile
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "pvc://serverless-ai-models"  # kind profile


@pytest.mark.parametrize("profile", ["gpu", "knative"])
def test_install_without_a_models_bucket(tmp_path, capsys, profile):
    """The chart has no default bucket: install stops before the cluster is contacted, naming the
    value; with the user's values file it renders."""
    kc = unreachable_kubeconfig(tmp_path)
    assert main(["cluster", "install", "--profile", profile, "--kubeconfig", str(kc)]) == 2
    err = capsys.readouterr().err
    assert "modelRepository.s3.uri is empty" in err and "-f my-values.yaml" in err and "127.0.0.1" not in err
    argv = ["cluster", "install", "--profile", profile, "-f", str(MODELS_BUCKET), "--kubeconfig", str(kc), "--dry-run"]
    assert main(argv) == 0
    assert "s3://example-models/serverless-ai" in capsys.readouterr().out


def test_install_missing_values_file(tmp_path, capsys):
    assert (
        main(["cluster", "install", "-f", str(tmp_path / "nope.yaml"), "--kubeconfig", str(unreachable_kubeconfig(tmp_path))])
        == 2
    )
    assert "no such values file" in capsys.readouterr().err


def test_install_stops_before_helm_when_prerequisites_are_missing(tmp_path, capsys):
    """Only Deployments/Nodes recorded: no CRDs, no Knative settings. The checks go through the
    real kubernetes client; exit 4 lists each problem with its fix, and Helm never runs."""
    with RecordedAPIServer(load("prereqs.yaml")) as server:
        kc = server.kubeconfig(tmp_path / "kc")
        assert main(["cluster", "install", "--profile", "gpu", "-f", str(MODELS_BUCKET), "--kubeconfig", str(kc)]) == 4
    err = capsys.readouterr().err
    assert "prerequisite(s) missing for the gpu profile" in err
    assert "KServe: CRD inferenceservices.serving.kserve.io (v1beta1) is not installed" in err
    assert (
        "fix: kubectl apply --server-side --force-conflicts -f https://github.com/kserve/kserve/releases/download/v0.20.0/kserve-crds.yaml"
        in err
    )
    assert "Knative Serving: CRD services.serving.knative.dev (v1) is not installed" in err
    assert "k8s/bootstrap.sh --profile gpu" in err
    assert "helm upgrade" not in err
    assert all(p.startswith(("/api/", "/apis/")) for p in server.requests)


def test_status_wait_coldstart_against_recorded_objects(tmp_path, capsys):
    objs = load("isvc-ready.yaml", "revision-active.yaml", "functions.yaml", "triton-pod.yaml", "minio.yaml")
    with RecordedAPIServer(objs) as server:
        kc = str(server.kubeconfig(tmp_path / "kc"))
        assert main(["cluster", "status", "--kubeconfig", kc]) == 1  # functions not all ready
        out = capsys.readouterr().out
        assert "inferenceservice serverless-ai-triton" in out and "1/1" in out and "last cold start" in out
        assert main(["cluster", "status", "--kubeconfig", kc, "--json"]) == 1
        assert yaml.safe_load(capsys.readouterr().out)["inferenceservice"]["ready"] is True
        assert main(["cluster", "wait", "--kubeconfig", kc, "--timeout", "5"]) == 0
        assert "Ready http://serverless-ai-triton.serverless-ai.svc.cluster.local" in capsys.readouterr().out
        assert main(["cluster", "wait", "--kubeconfig", kc, "--release", "other"]) == 3
        # Triton is up: --no-wait says how long the scale-to-zero window is
        assert main(["cluster", "coldstart", "--kubeconfig", kc, "--gateway", "http://127.0.0.1:9", "--no-wait"]) == 1
        err = capsys.readouterr().err
        assert "Triton is up (1 pod(s))" in err and "about 660s after the last request" in err


def test_coldstart_needs_an_explicit_gateway(tmp_path, capsys):
    kc = str(unreachable_kubeconfig(tmp_path))
    assert main(["cluster", "coldstart", "--kubeconfig", kc]) == 2
    assert "--gateway URL or set OPENFAAS_URL" in capsys.readouterr().err
    assert main(["cluster", "coldstart", "--kubeconfig", kc, "--gateway", "http://gw", "--function", "object-classify"]) == 2
    assert (
        main(["cluster", "coldstart", "--kubeconfig", kc, "--gateway", "http://gw", "--image", str(tmp_path / "none.jpg")]) == 2
    )


def test_uninstall_dry_run(tmp_path, capsys):
    kc = unreachable_kubeconfig(tmp_path)
    assert main(["cluster", "uninstall", "--kubeconfig", str(kc), "--dry-run", "--wait"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"# would run: helm uninstall serverless-ai --namespace serverless-ai --wait --timeout 10m --kubeconfig {kc}"
    )


@pytest.mark.parametrize("sdk", ["kubernetes", "kserve"])
def test_without_the_cluster_extra(sdk, monkeypatch, tmp_path, capsys):
    """As on an install without `.[cluster]`: the SDK cannot be imported."""
    import sys

    for mod in [m for m in sys.modules if m == sdk or m.startswith(sdk + ".")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, sdk, None)
    objs = load("isvc-ready.yaml")
    with RecordedAPIServer(objs) as server:
        assert main(["cluster", "wait", "--kubeconfig", str(server.kubeconfig(tmp_path / "kc"))]) == 2
    assert f"{sdk} is not installed: pip install -e '.[cluster]'" in capsys.readouterr().err


def test_install_with_prerequisites_in_place_hands_over_to_helm_with_that_kubeconfig(tmp_path, capsys):
    """All prerequisites recorded (upstream CRDs, Knative's ConfigMaps from the kind overlay): the
    checks pass and Helm runs with the same kubeconfig, so the Helm binary's requests reach the
    recorded server (which cannot install anything: Helm then fails, as it must without a cluster)."""
    from test_cluster_prereqs import overlay_configmaps

    from sai.cluster.project import crds_dir

    crds = []
    for f in sorted(crds_dir().glob("*.yaml")):
        crds += [d for d in yaml.load_all(f.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d]
    objs = crds + load("prereqs.yaml") + overlay_configmaps("kind")
    with RecordedAPIServer(objs) as server:
        kc = server.kubeconfig(tmp_path / "kc")
        rc = main(["cluster", "install", "--profile", "kind", "--kubeconfig", str(kc)])
    out, err = capsys.readouterr()
    assert "prerequisites for the kind profile: ok" in out
    assert "helm upgrade --install serverless-ai" in err and f"--kubeconfig {kc}" in err
    assert rc != 0
    helm = [p for p, agent in zip(server.requests, server.agents) if agent.startswith("Helm/")]
    assert helm, server.agents  # the Helm binary talked to the kubeconfig's server, not to a default


def test_context_and_kubeconfig_list(monkeypatch, tmp_path, capsys):
    two = tmp_path / "two.kubeconfig"
    two.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "a",
                "clusters": [{"name": "ca", "cluster": {"server": "https://127.0.0.1:9"}}],
                "contexts": [
                    {"name": "a", "context": {"cluster": "ca", "user": "u"}},
                    {"name": "b", "context": {"cluster": "cb", "user": "u"}},
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    assert main(["cluster", "status", "--kubeconfig", str(two), "--context", "nope"]) == 2
    assert "context 'nope' not found (have: a, b)" in capsys.readouterr().err
    assert main(["cluster", "status", "--kubeconfig", str(two), "--context", "b"]) == 2
    assert "context 'b' names no cluster with a server address" in capsys.readouterr().err
    # $KUBECONFIG as a list: the first file that exists
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{two}")
    assert main(["cluster", "uninstall", "--dry-run"]) == 0
    assert f"--kubeconfig {two}" in capsys.readouterr().out


def shifted(obj, delta):
    """A recorded object moved in time by delta (every timestamp field), as if it happened now."""
    from datetime import datetime

    keys = {
        "creationTimestamp",
        "lastTransitionTime",
        "startedAt",
        "finishedAt",
        "startTime",
        "firstTimestamp",
        "lastTimestamp",
        "eventTime",
    }
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in keys and isinstance(v, str):
                out[k] = (datetime.fromisoformat(v.replace("Z", "+00:00")) + delta).isoformat()
            else:
                out[k] = shifted(v, delta)
        return out
    if isinstance(obj, list):
        return [shifted(v, delta) for v in obj]
    return obj


def test_coldstart_end_to_end_against_recorded_objects(tmp_path, capsys):
    """Triton scaled to zero (revision recorded with 0 replicas, no pod). A stand-in gateway answers
    the request and, as Knative would, a Triton pod and its events appear (the recorded ones, moved
    to now). The command sends, times and attributes the wake-up."""
    import threading
    from datetime import datetime
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    woken = load("triton-pod.yaml")
    with RecordedAPIServer(load("isvc-ready.yaml", "revision-zero.yaml")) as server:

        class Gateway(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                delta = datetime.now(UTC) - datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
                server.recorded.objects += [shifted(o, delta) for o in woken]
                body = b'{"predictions": [{"label": "tiger cat", "score": 0.4}]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        gw = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
        threading.Thread(target=gw.serve_forever, daemon=True).start()
        try:
            kc = str(server.kubeconfig(tmp_path / "kc"))
            url = f"http://127.0.0.1:{gw.server_address[1]}"
            assert main(["cluster", "coldstart", "--kubeconfig", kc, "--gateway", url, "--json"]) == 0
        finally:
            gw.shutdown()
            gw.server_close()
    rep = yaml.safe_load(capsys.readouterr().out)
    assert rep["http_status"] == 200 and rep["woke_from_zero"]
    assert rep["pod"] == WOKEN_POD
    assert {p["phase"] for p in rep["phases"]} == {*WOKEN_POD_PHASES, "first byte"}
    assert rep["scale_to_zero_window"]["retention_s"] == 600.0

"""`sai cluster status`, `wait` and the cold-start report on recorded API objects (no cluster here):
see tests/cluster_objects/README.md for where each object's shape comes from."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cluster_recorded import WOKEN_POD, WOKEN_POD_PHASES, Recorded, RecordedAPIServer, load

from sai.cluster import coldstart, status, timeline
from sai.cluster.wait import NotReady, wait_ready

FUNCTIONS = ["image-classify", "text-sentiment", "text-embed"]
POD = WOKEN_POD


def test_ready_and_scaled_to_zero_is_ready_with_degraded_functions():
    reads = Recorded(load("isvc-ready.yaml", "revision-zero.yaml", "functions.yaml", "minio.yaml"))
    s = status.collect(reads, FUNCTIONS)
    i = s["inferenceservice"]
    assert i["ready"] and i["scaled_to_zero"] and i["replicas"] == "0 (scaled to zero)"
    assert i["active_reason"] == "NoTraffic"
    assert i["url"] == "http://serverless-ai-triton.serverless-ai.svc.cluster.local"
    assert i["latest_ready_revision"] == "serverless-ai-triton-predictor-00001"
    assert (i["model_state"], i["transition"]) == ("Loaded", "UpToDate")
    fns = {f["name"]: f for f in s["functions"]}
    assert fns["image-classify"]["ready"] and fns["image-classify"]["image"] == "kind-registry.local:5000/image-classify:0.1.0"
    assert not fns["text-sentiment"]["ready"] and fns["text-sentiment"]["deployed"]
    assert not fns["text-embed"]["deployed"]
    assert s["minio"]["ready"]
    assert s["minio"]["notification_target"] == "http://gateway.openfaas.svc.cluster.local:8080/function/object-classify"
    assert s["last_cold_start"] is None  # no pod and no events recorded
    assert s["exit_code"] == status.EXIT_DEGRADED  # functions not ready
    table = status.render(s)
    assert "0 (scaled to zero)" in table and "not deployed" in table and "0/1 ready" in table
    assert "Active: NoTraffic" in table
    json.loads(status.to_json(s))


def test_all_ready_exit_0_and_last_cold_start_from_the_pod():
    objs = load("isvc-ready.yaml", "revision-active.yaml", "functions.yaml", "triton-pod.yaml")
    reads = Recorded(objs)
    s = status.collect(reads, ["image-classify"])
    assert s["inferenceservice"]["replicas"] == "1/1"
    assert s["minio"] is None  # not enabled in this recording
    assert s["exit_code"] == status.EXIT_READY
    cs = s["last_cold_start"]
    assert cs["pod"] == POD
    phases = {p["phase"]: p["seconds"] for p in cs["phases"]}
    assert phases == {
        "pod created": 0.0,
        "scheduled": 41.0,
        "models fetched": 70.0,
        "image pulled": 182.0,
        "container started": 185.0,
        "model ready": 211.0,
    }


def test_last_cold_start_from_events_once_the_pod_is_gone():
    """Scaled to zero: the pod is gone, its events (kept an hour by default) still tell the start."""
    events = [o for o in load("triton-pod.yaml") if o["kind"] == "Event"]
    reads = Recorded(load("isvc-ready.yaml", "revision-zero.yaml") + events)
    cs = status.collect(reads, [])["last_cold_start"]
    assert cs["pod"] == POD and cs["pod_gone"]  # the newest of the two pods with events
    assert [(p["phase"], p["seconds"]) for p in cs["phases"]] == [
        ("scheduled", 0.0),
        ("image pulled", 140.8),
        ("container started", 143.8),
    ]
    assert "(pod gone; from its events)" in status.render(status.collect(reads, []))


def test_failed_isvc_shows_reason_and_message_exit_1():
    s = status.collect(Recorded(load("isvc-failed.yaml", "functions.yaml")), ["image-classify"])
    i = s["inferenceservice"]
    assert not i["ready"] and i["reason"] == "RevisionFailed"
    assert "Initial scale was never achieved" in i["message"]
    assert i["latest_ready_revision"] == "" and i["replicas"] == "0 running (no ready revision)"
    assert not i["scaled_to_zero"]
    assert any(c.startswith("PredictorReady: RevisionFailed") for c in i["not_ready_conditions"])
    assert s["exit_code"] == status.EXIT_DEGRADED
    assert "not ready (False: RevisionFailed)" in status.render(s)


def test_not_installed_exit_3():
    s = status.collect(Recorded(load("functions.yaml")), FUNCTIONS)
    assert s["exit_code"] == status.EXIT_NOT_INSTALLED
    assert "sai cluster install" in status.render(s)


@pytest.mark.parametrize(
    ("desired", "actual", "text"),
    [
        (0, 0, "0 (scaled to zero)"),
        (1, 0, "0 (waking: 1 wanted)"),
        (2, 1, "1/2"),
        (None, None, "unknown"),
    ],
)
def test_replicas_text(desired, actual, text):
    assert status.replicas_text(desired, actual) == text


def test_timeline_ignores_other_pods_events_and_reads_pull_message():
    objs = load("triton-pod.yaml")
    pod = next(o for o in objs if o["kind"] == "Pod")
    events = [o for o in objs if o["kind"] == "Event"]
    assert timeline.triton_container(pod) == "kserve-container"
    mine = timeline.pod_events(pod, events)
    assert len(mine) == len(events) - 1  # the earlier pod's Pulled event is not this pod's
    pulled = next(p for p in timeline.pod_timeline(pod, events) if p.name == "image pulled")
    assert "in 1m52.104s" in pulled.detail
    # scheduler events carry eventTime only; kubelet events firstTimestamp/lastTimestamp
    sched = next(e for e in events if e["reason"] == "Scheduled")
    assert timeline.event_time(sched) == datetime(2026, 11, 27, 10, 0, 41, 208114, tzinfo=UTC)


def test_coldstart_report_relative_to_the_request():
    objs = load("triton-pod.yaml")
    pods = [o for o in objs if o["kind"] == "Pod"]
    events = [o for o in objs if o["kind"] == "Event"]
    sent = datetime(2026, 11, 27, 9, 59, 59, 500000, tzinfo=UTC)
    rep = coldstart.report(sent, 212.3, 212.4, 200, pods, events)
    assert rep["woke_from_zero"] and rep["pod"] == POD
    names = [p["phase"] for p in rep["phases"]]
    assert names == [*WOKEN_POD_PHASES, "first byte"]
    assert rep["phases"][0]["seconds"] == 0.5 and rep["phases"][-1]["seconds"] == 212.3
    text = coldstart.render(rep)
    assert "first byte after 212.3s" in text and "image pulled" in text
    # a pod older than the request did not wake for it
    late = datetime(2026, 11, 27, 10, 5, tzinfo=UTC)
    rep = coldstart.report(late, 0.02, 0.03, 200, pods, events)
    assert not rep["woke_from_zero"] and [p["phase"] for p in rep["phases"]] == ["first byte"]


def test_scale_window_from_revision_and_config_autoscaler():
    rev = load("revision-zero.yaml")[0]
    w = coldstart.scale_window(rev, None)  # Knative defaults: 60 s stable window, 30 s grace period
    assert w == {"stable_window_s": 60.0, "retention_s": 600.0, "grace_period_s": 30.0, "after_last_request_s": 660.0}
    cm = {"data": {"stable-window": "30s", "scale-to-zero-grace-period": "10s"}}
    rev["metadata"]["annotations"]["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] = "0s"
    assert coldstart.scale_window(rev, cm)["after_last_request_s"] == 40.0
    assert "about 40s after the last request" in coldstart.window_text(coldstart.scale_window(rev, cm))


@pytest.mark.parametrize(
    ("text", "seconds"), [("1m", 60), ("1m30s", 90), ("10s", 10), ("1h", 3600), ("500ms", 0.5), ("x", None), ("", None)]
)
def test_parse_duration(text, seconds):
    assert coldstart.parse_duration(text) == seconds


def test_wait_for_zero_follows_the_pod_watch():
    objs = load("triton-pod.yaml")
    pod = next(o for o in objs if o["kind"] == "Pod")
    reads = Recorded(objs, pod_watch=[("ADDED", pod), ("MODIFIED", pod), ("DELETED", pod)])
    assert coldstart.wait_for_zero(reads, "serverless-ai", 5) < 5
    assert reads.pods("serverless-ai", "app.kubernetes.io/component=triton") == []


def test_wait_ready_watches_until_ready():
    failed, ready = load("isvc-failed.yaml")[0], load("isvc-ready.yaml")[0]
    reads = Recorded([failed], watch={"serverless-ai-triton": [failed, ready]})
    seen = []
    assert wait_ready(reads, "serverless-ai", "serverless-ai-triton", 5, echo=seen.append) is ready
    assert seen[0].startswith("inferenceservice serverless-ai-triton: Ready=False (RevisionFailed)")
    assert "Ready=True" in seen[-1]
    reads = Recorded([failed], watch={"serverless-ai-triton": [failed]})
    with pytest.raises(NotReady, match="not Ready after 0.2s"):
        wait_ready(reads, "serverless-ai", "serverless-ai-triton", 0.2, echo=seen.append)


def test_status_through_the_real_sdks(tmp_path):
    """ClusterReads (kubernetes client + KServeClient) against the recorded objects over HTTP:
    the REST paths, the 404 handling and the typed round trip give the same summary."""
    from sai.cluster.kubeconfig import resolve
    from sai.cluster.reads import ClusterReads

    objs = load("isvc-ready.yaml", "revision-active.yaml", "functions.yaml", "triton-pod.yaml")
    with RecordedAPIServer(objs) as server:
        reads = ClusterReads(resolve(str(server.kubeconfig(tmp_path / "kubeconfig"))))
        live = status.collect(reads, ["image-classify", "text-sentiment", "text-embed"])
        assert reads.isvc_ready("serverless-ai", "serverless-ai-triton")
        assert reads.isvc("serverless-ai", "nope") is None
    offline = status.collect(Recorded(objs), ["image-classify", "text-sentiment", "text-embed"])
    assert live["inferenceservice"] == offline["inferenceservice"]
    assert live["functions"] == offline["functions"]
    assert live["minio"] is None and live["exit_code"] == status.EXIT_DEGRADED
    assert [p["phase"] for p in live["last_cold_start"]["phases"]] == [p["phase"] for p in offline["last_cold_start"]["phases"]]
    paths = " ".join(server.requests)
    assert "/apis/serving.kserve.io/v1beta1/namespaces/serverless-ai/inferenceservices/serverless-ai-triton" in paths
    assert "/apis/serving.knative.dev/v1/namespaces/serverless-ai/revisions/serverless-ai-triton-predictor-00001" in paths
    assert "labelSelector=app.kubernetes.io%2Fcomponent%3Dtriton" in paths


def test_waits_give_up_at_the_timeout_when_watches_end_empty():
    """A server that ends each watch without events: both waits look again and time out cleanly."""
    import time

    objs = load("isvc-failed.yaml", "triton-pod.yaml")
    reads = Recorded(objs)
    start = time.monotonic()
    with pytest.raises(NotReady):
        wait_ready(reads, "serverless-ai", "serverless-ai-triton", 1.5, echo=lambda _: None)
    with pytest.raises(TimeoutError, match="1 Triton pod"):
        coldstart.wait_for_zero(reads, "serverless-ai", 1.5)
    assert 3 <= time.monotonic() - start < 8

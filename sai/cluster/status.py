"""`sai cluster status`: one table of what the cluster runs, from plain API dicts.

Exit codes as for `sai status`: 0 ready, 1 degraded (something installed is not ready), 3 not
installed (no InferenceService). Field names: KServe v0.20.0 InferenceServiceStatus
(pkg/apis/serving/v1beta1/inference_service_status.go), Knative knative-v1.23.0 RevisionStatus
(actualReplicas/desiredReplicas, condition Active: False/NoTraffic when scaled to zero,
pkg/reconciler/autoscaling/kpa/kpa.go), apps/v1 Deployment, batch/v1 Job.
"""

from __future__ import annotations

import json

from sai import cluster
from sai.cluster import timeline

EXIT_READY, EXIT_DEGRADED, EXIT_NOT_INSTALLED = 0, 1, 3


def condition(obj: dict | None, kind: str) -> dict:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return {}


def replicas_text(desired, actual) -> str:
    if actual is None and desired is None:
        return "unknown"
    if (actual or 0) == 0 and (desired or 0) == 0:
        return "0 (scaled to zero)"
    if (actual or 0) == 0:
        return f"0 (waking: {desired} wanted)"
    return f"{actual}/{desired if desired is not None else '?'}"


def summarize_isvc(isvc: dict | None, revision: dict | None, pods: list[dict]) -> dict:
    if isvc is None:
        return {"installed": False, "ready": False}
    st = isvc.get("status") or {}
    ready = condition(isvc, "Ready")
    pred = (st.get("components") or {}).get("predictor") or {}
    rst = (revision or {}).get("status") or {}
    desired, actual = rst.get("desiredReplicas"), rst.get("actualReplicas")
    replicas = replicas_text(desired, actual)
    if revision is None:  # no ready revision (failed, or still deploying): count running pods
        actual = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")
        replicas = f"{actual} running (no ready revision)"
    active = condition(revision, "Active")
    model = st.get("modelStatus") or {}
    return {
        "installed": True,
        "name": (isvc.get("metadata") or {}).get("name"),
        "ready": ready.get("status") == "True",
        "ready_status": ready.get("status", "Unknown"),
        "reason": ready.get("reason", ""),
        "message": ready.get("message", ""),
        "url": st.get("url", ""),
        "deployment_mode": st.get("deploymentMode", ""),
        "latest_ready_revision": pred.get("latestReadyRevision", ""),
        "latest_created_revision": pred.get("latestCreatedRevision", ""),
        "desired_replicas": desired,
        "actual_replicas": actual,
        "replicas": replicas,
        "scaled_to_zero": revision is not None and (actual or 0) == 0 and (desired or 0) == 0,
        "active_reason": active.get("reason", ""),
        "model_state": (model.get("states") or {}).get("activeModelState", ""),
        "transition": model.get("transitionStatus", ""),
        "not_ready_conditions": [
            f"{c['type']}: {c.get('reason', '')} {c.get('message', '')}".strip()
            for c in st.get("conditions") or []
            if c.get("status") != "True" and c.get("type") != "Ready" and c.get("severity", "") != "Info"
        ],
    }


def summarize_function(name: str, deployment: dict | None) -> dict:
    if deployment is None:
        return {"name": name, "deployed": False, "ready": False, "ready_replicas": 0, "replicas": 0, "image": ""}
    spec, st = deployment.get("spec") or {}, deployment.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    want = spec.get("replicas", 1)
    have = st.get("readyReplicas", 0) or 0
    return {
        "name": name,
        "deployed": True,
        "ready": have >= max(1, want or 0),
        "ready_replicas": have,
        "replicas": want,
        "image": containers[0].get("image", ""),
    }


def summarize_minio(deployment: dict | None, setup_job: dict | None) -> dict | None:
    if deployment is None:
        return None
    st = deployment.get("status") or {}
    containers = ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or [{}]
    env = {e.get("name"): e.get("value") for e in containers[0].get("env") or []}
    target = env.get("MINIO_NOTIFY_WEBHOOK_ENDPOINT_SAI", "") if env.get("MINIO_NOTIFY_WEBHOOK_ENABLE_SAI") == "on" else ""
    if setup_job is None:
        # The set-up Job is a post-install hook deleted when it succeeds (hook-succeeded).
        setup = "done (hook Job succeeded and was removed)"
        setup_ok = True
    else:
        js = setup_job.get("status") or {}
        failed = condition(setup_job, "Failed").get("status") == "True"
        setup_ok = bool(js.get("succeeded"))
        setup = "failed" if failed else ("done" if setup_ok else f"running ({js.get('failed', 0)} failed attempts)")
    have = st.get("readyReplicas", 0) or 0
    return {
        "ready": have >= 1 and setup_ok and bool(target),
        "ready_replicas": have,
        "notification_target": target or "(none: uploads notify nothing)",
        "bucket_setup": setup,
    }


def last_cold_start(pods: list[dict], events: list[dict], release: str = cluster.RELEASE) -> dict | None:
    """The newest Triton pod's start; when none is left (scaled to zero), what its events still tell."""
    pod = timeline.newest_pod(pods)
    if pod is not None:
        name, phases, gone = pod["metadata"]["name"], timeline.pod_timeline(pod, events), False
    else:
        found = timeline.gone_pod_timeline(events, cluster.predictor_ksvc_name(release) + "-")
        if found is None:
            return None
        (name, phases), gone = found, True
    if not phases:
        return None
    return {"pod": name, "pod_gone": gone, "at": phases[0].at.isoformat(), "phases": timeline.relative(phases, phases[0].at)}


def exit_code(summary: dict) -> int:
    if not summary["inferenceservice"]["installed"]:
        return EXIT_NOT_INSTALLED
    ok = summary["inferenceservice"]["ready"] and all(f["ready"] for f in summary["functions"])
    if summary.get("minio") is not None:
        ok = ok and summary["minio"]["ready"]
    return EXIT_READY if ok else EXIT_DEGRADED


def collect(
    reads,
    functions: list[str],
    release: str = cluster.RELEASE,
    namespace: str = cluster.NAMESPACE,
    function_namespace: str = cluster.FUNCTION_NAMESPACE,
) -> dict:
    """Everything `status` shows, read through `reads` (reads.ClusterReads or recorded objects)."""
    isvc = reads.isvc(namespace, cluster.isvc_name(release))
    revision = None
    if isvc is not None:
        rev_name = (((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}).get("latestReadyRevision")
        revision = reads.revision(namespace, rev_name) if rev_name else None
    pods = reads.pods(namespace, cluster.TRITON_COMPONENT)
    events = reads.events(namespace, "involvedObject.kind=Pod")
    deployments = {
        (d.get("metadata") or {}).get("labels", {}).get("faas_function"): d
        for d in reads.deployments(function_namespace, "faas_function")
    }
    minio_name = f"{release}-minio"
    summary = {
        "inferenceservice": summarize_isvc(isvc, revision, pods),
        "functions": [summarize_function(n, deployments.get(n)) for n in functions],
        "minio": summarize_minio(reads.deployment(namespace, minio_name), reads.job(namespace, f"{minio_name}-setup")),
        "last_cold_start": last_cold_start(pods, events, release),
    }
    summary["exit_code"] = exit_code(summary)
    return summary


def render(summary: dict) -> str:
    rows: list[tuple[str, str, str]] = []
    i = summary["inferenceservice"]
    if not i["installed"]:
        rows.append(("inferenceservice", "not installed", "run `sai cluster install`"))
    else:
        state = "Ready" if i["ready"] else f"not ready ({i['ready_status']}{': ' + i['reason'] if i['reason'] else ''})"
        rows.append((f"inferenceservice {i['name']}", state, i["url"] or "(no URL yet)"))
        rows.append(
            (
                "  revision",
                i["latest_ready_revision"] or "(none ready)",
                f"latest created {i['latest_created_revision']}"
                if i["latest_created_revision"] != i["latest_ready_revision"]
                else "",
            )
        )
        rows.append(("  replicas", i["replicas"], f"Active: {i['active_reason']}" if i["active_reason"] else ""))
        if i["model_state"] or i["transition"]:
            rows.append(("  models", i["model_state"] or "-", i["transition"]))
        if i["message"] and not i["ready"]:
            rows.append(("  message", "", i["message"]))
        for c in i["not_ready_conditions"]:
            rows.append(("  condition", "", c))
    for f in summary["functions"]:
        if not f["deployed"]:
            rows.append((f"function {f['name']}", "not deployed", "faas-cli deploy -f stack.yml"))
        else:
            rows.append((f"function {f['name']}", f"{f['ready_replicas']}/{f['replicas']} ready", f["image"]))
    m = summary.get("minio")
    if m is not None:
        rows.append(
            (
                "minio",
                f"{m['ready_replicas']} ready" if m["ready_replicas"] else "not ready",
                f"bucket set-up: {m['bucket_setup']}",
            )
        )
        rows.append(("  notification", "", m["notification_target"]))
    cs = summary.get("last_cold_start")
    if cs is None:
        rows.append(("last cold start", "-", "no Triton pod (scaled to zero) and none recorded"))
    else:
        steps = ", ".join(f"{p['phase']} +{p['seconds']:g}s" for p in cs["phases"][1:])
        gone = " (pod gone; from its events)" if cs.get("pod_gone") else ""
        rows.append(("last cold start", cs["at"], f"{cs['pod']}{gone}: {steps}"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows)


def to_json(summary: dict) -> str:
    return json.dumps(summary, indent=2, default=str)

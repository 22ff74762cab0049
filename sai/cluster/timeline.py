"""Where a Triton pod's start went, from the pod's conditions and its events (plain API dicts).

Phases, in the order a wake from zero passes them:
  pod created      metadata.creationTimestamp (Knative's autoscaler asked for a replica)
  scheduled        condition PodScheduled (a GPU node may have had to be provisioned first)
  models fetched   condition Initialized: KServe's storage-initializer init container copied the
                   model repository from S3 (absent with a PVC: nothing to download)
  image pulled     event Pulled of the Triton container (its message says how long the pull took,
                   or "already present on machine")
  container started  containerStatuses[].state.running.startedAt
  model ready      condition Ready: the readiness probe /v2/health/ready passed, which with
                   --strict-readiness means every model is loaded
Kubernetes: core/v1 Pod status conditions and Event (eventTime, or firstTimestamp/lastTimestamp
for events recorded through the core/v1 API, as the kubelet's are).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

SIDECARS = {"queue-proxy"}  # Knative's sidecar; the other container is Triton


def parse_time(value) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def event_time(event: dict) -> datetime | None:
    return (
        parse_time(event.get("eventTime"))
        or parse_time(event.get("lastTimestamp"))
        or parse_time(event.get("firstTimestamp"))
        or parse_time((event.get("metadata") or {}).get("creationTimestamp"))
    )


@dataclass
class Phase:
    name: str
    at: datetime
    detail: str = ""


def triton_container(pod: dict) -> str | None:
    names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    return next((n for n in names if n not in SIDECARS), None)


def _condition(pod: dict, kind: str) -> dict | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return c
    return None


def pod_events(pod: dict, events: list[dict]) -> list[dict]:
    name = (pod.get("metadata") or {}).get("name")
    uid = (pod.get("metadata") or {}).get("uid")
    out = []
    for e in events:
        obj = e.get("involvedObject") or e.get("regarding") or {}
        if (
            obj.get("kind", "Pod") == "Pod"
            and obj.get("name") == name
            and (not uid or not obj.get("uid") or obj.get("uid") == uid)
        ):
            out.append(e)
    return sorted(out, key=lambda e: event_time(e) or datetime.min.replace(tzinfo=UTC))


def pod_timeline(pod: dict, events: list[dict]) -> list[Phase]:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    container = triton_container(pod)
    phases: list[Phase] = []
    created = parse_time(meta.get("creationTimestamp"))
    if created:
        phases.append(Phase("pod created", created, meta.get("name", "")))
    mine = pod_events(pod, events)
    sched = _condition(pod, "PodScheduled")
    sched_event = next((e for e in mine if e.get("reason") == "Scheduled"), None)
    if sched or sched_event:
        at = parse_time((sched or {}).get("lastTransitionTime")) or event_time(sched_event)
        node = (pod.get("spec") or {}).get("nodeName") or ""
        phases.append(Phase("scheduled", at, f"on {node}" if node else (sched_event or {}).get("message", "")))
    init = _condition(pod, "Initialized")
    if init and (pod.get("spec") or {}).get("initContainers"):
        phases.append(Phase("models fetched", parse_time(init.get("lastTransitionTime")), "storage-initializer done"))
    field = f"spec.containers{{{container}}}"
    pulled = next(
        (
            e
            for e in mine
            if e.get("reason") == "Pulled" and (e.get("involvedObject") or e.get("regarding") or {}).get("fieldPath") == field
        ),
        None,
    )
    if pulled:
        phases.append(Phase("image pulled", event_time(pulled), pulled.get("message") or pulled.get("note") or ""))
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") == container:
            running = (cs.get("state") or {}).get("running") or {}
            started = parse_time(running.get("startedAt"))
            if started:
                restarts = cs.get("restartCount", 0)
                phases.append(Phase("container started", started, f"{restarts} restart(s)" if restarts else ""))
    ready = _condition(pod, "Ready")
    if ready:
        phases.append(Phase("model ready", parse_time(ready.get("lastTransitionTime")), "readiness /v2/health/ready"))
    return sorted((p for p in phases if p.at), key=lambda p: p.at)


def relative(phases: list[Phase], start: datetime) -> list[dict]:
    """Phases as seconds after `start` (the request, or the pod's creation)."""
    return [{"phase": p.name, "seconds": round((p.at - start).total_seconds(), 1), "detail": p.detail} for p in phases]


def newest_pod(pods: list[dict]) -> dict | None:
    dated = [(parse_time((p.get("metadata") or {}).get("creationTimestamp")), p) for p in pods]
    dated = [d for d in dated if d[0]]
    return max(dated, key=lambda d: d[0])[1] if dated else None


def gone_pod_timeline(events: list[dict], name_prefix: str) -> tuple[str, list[Phase]] | None:
    """The newest pod under `name_prefix` as its events tell it, for when the pod is gone (scaled to
    zero; events outlive their pod, an hour by default): scheduled, image pulled, container started.
    Readiness leaves no event, so "model ready" cannot be told from events alone."""
    groups: dict[str, list[dict]] = {}
    for e in events:
        obj = e.get("involvedObject") or e.get("regarding") or {}
        if obj.get("kind") == "Pod" and str(obj.get("name", "")).startswith(name_prefix) and event_time(e):
            groups.setdefault(obj["name"], []).append(e)
    if not groups:
        return None
    name, mine = max(groups.items(), key=lambda kv: min(event_time(e) for e in kv[1]))
    mine.sort(key=event_time)
    phases = []
    for e in mine:
        field = (e.get("involvedObject") or e.get("regarding") or {}).get("fieldPath", "")
        main_container = field.startswith("spec.containers{") and field[len("spec.containers{") : -1] not in SIDECARS
        if e.get("reason") == "Scheduled":
            phases.append(Phase("scheduled", event_time(e), e.get("message") or e.get("note") or ""))
        elif e.get("reason") == "Pulled" and main_container:
            phases.append(Phase("image pulled", event_time(e), e.get("message") or e.get("note") or ""))
        elif e.get("reason") == "Started" and main_container:
            phases.append(Phase("container started", event_time(e), ""))
    return (name, phases) if phases else None

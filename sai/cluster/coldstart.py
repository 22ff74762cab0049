"""`sai cluster coldstart`: wait until Triton has scaled to zero, send one request through the
gateway, and say where the time to first byte went.

The scale-to-zero window (Knative knative-v1.23.0, KPA): once no request has arrived for the
stable window (`stable-window` in config-autoscaler, 60 s by default, or the revision's
`autoscaling.knative.dev/window`), the autoscaler decides on zero; the last pod then stays for the
revision's `autoscaling.knative.dev/scale-to-zero-pod-retention-period` (the chart's
triton.scaleToZeroRetention) or the `scale-to-zero-grace-period` (30 s by default), the longer of
the two (pkg/autoscaler/config/config.go; pkg/reconciler/autoscaling/kpa/scaler.go).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from sai import cluster
from sai.cluster import timeline

STABLE_WINDOW_S = 60.0  # knative-v1.23.0 pkg/autoscaler/config/config.go defaults
GRACE_PERIOD_S = 30.0
RETENTION = "autoscaling.knative.dev/scale-to-zero-pod-retention-period"
WINDOW = "autoscaling.knative.dev/window"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")


def parse_duration(text: str | None) -> float | None:
    """Go duration ("1m30s", "10s", "0s") in seconds; None if absent or unparsable."""
    if not text:
        return None
    text = str(text).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


def scale_window(revision: dict | None, autoscaler_cm: dict | None) -> dict:
    ann = ((revision or {}).get("metadata") or {}).get("annotations") or {}
    data = (autoscaler_cm or {}).get("data") or {}
    stable = parse_duration(ann.get(WINDOW)) or parse_duration(data.get("stable-window")) or STABLE_WINDOW_S
    grace = parse_duration(data.get("scale-to-zero-grace-period")) or GRACE_PERIOD_S
    retention = parse_duration(ann.get(RETENTION)) or parse_duration(data.get("scale-to-zero-pod-retention-period")) or 0.0
    return {
        "stable_window_s": stable,
        "retention_s": retention,
        "grace_period_s": grace,
        "after_last_request_s": stable + max(retention, grace),
    }


def window_text(w: dict) -> str:
    return (
        f"Triton scales to zero about {w['after_last_request_s']:g}s after the last request "
        f"(stable window {w['stable_window_s']:g}s + max(retention {w['retention_s']:g}s, grace period {w['grace_period_s']:g}s))"
    )


def live_pods(pods: list[dict]) -> list[dict]:
    return [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]


def report(sent_at: datetime, first_byte_s: float, total_s: float, status: int, pods: list[dict], events: list[dict]) -> dict:
    """Phases of the pod that answered, in seconds after the request was sent."""
    woken = [
        p
        for p in pods
        if (timeline.parse_time((p.get("metadata") or {}).get("creationTimestamp")) or sent_at) >= sent_at - timedelta(seconds=2)
    ]
    pod = timeline.newest_pod(woken)
    phases = timeline.relative(timeline.pod_timeline(pod, events), sent_at) if pod else []
    phases.append({"phase": "first byte", "seconds": round(first_byte_s, 1), "detail": f"HTTP {status}"})
    return {
        "sent_at": sent_at.isoformat(),
        "time_to_first_byte_s": round(first_byte_s, 3),
        "total_s": round(total_s, 3),
        "http_status": status,
        "pod": (pod or {}).get("metadata", {}).get("name"),
        "woke_from_zero": pod is not None,
        "phases": sorted(phases, key=lambda p: p["seconds"]),
    }


def render(rep: dict) -> str:
    lines = [
        f"cold start: first byte after {rep['time_to_first_byte_s']:.1f}s (HTTP {rep['http_status']}, total {rep['total_s']:.1f}s)"
    ]
    if not rep["woke_from_zero"]:
        lines.append("  no new Triton pod was found: the request did not wake Triton from zero")
    for p in rep["phases"]:
        lines.append(f"  +{p['seconds']:7.1f}s  {p['phase']:<18} {p['detail']}".rstrip())
    return "\n".join(lines)


def wait_for_zero(reads, namespace: str, timeout_s: float, echo=print) -> float:
    """Block until no Triton pod is left (a pod watch); returns the seconds waited."""
    start = time.monotonic()
    while alive := {p["metadata"]["name"] for p in live_pods(reads.pods(namespace, cluster.TRITON_COMPONENT))}:
        left = timeout_s - (time.monotonic() - start)
        if left <= 0:
            raise TimeoutError(f"{len(alive)} Triton pod(s) still running after {timeout_s:g}s: {', '.join(sorted(alive))}")
        # A watch from now on; when the server ends it, list again (nothing is missed in between).
        for kind, pod in reads.watch_pods(namespace, cluster.TRITON_COMPONENT, int(left) + 1):
            name = pod["metadata"]["name"]
            if kind == "DELETED" or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                alive.discard(name)
            else:
                alive.add(name)
            if not alive:
                break
        else:
            time.sleep(min(1.0, max(0.0, timeout_s - (time.monotonic() - start))))
    return time.monotonic() - start


def send(url: str, body: bytes, content_type: str, timeout_s: float) -> tuple[float, float, int, bytes]:
    """POST and time the first byte of the response body (after the headers) and the whole."""
    import requests

    t0 = time.perf_counter()
    with requests.post(url, data=body, headers={"Content-Type": content_type}, stream=True, timeout=timeout_s) as resp:
        first = resp.raw.read(1, decode_content=True)
        ttfb = time.perf_counter() - t0
        rest = resp.raw.read(decode_content=True) if first else b""
        return ttfb, time.perf_counter() - t0, resp.status_code, first + rest


def now() -> datetime:
    return datetime.now(UTC)

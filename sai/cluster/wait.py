"""`sai cluster wait`: until the InferenceService is Ready, through the KServe SDK and a watch.

KServeClient.is_isvc_ready answers at once when it is already Ready; otherwise a watch on the one
InferenceService (CustomObjectsApi list + field selector, what the SDK's own isvc_watch streams)
reports each change of its Ready condition, without polling.
"""

from __future__ import annotations

import time

from sai.cluster import reads as reads_mod
from sai.cluster.status import condition


class NotReady(Exception):
    def __init__(self, message: str, last: dict | None):
        super().__init__(message)
        self.last = last


def describe(isvc: dict | None) -> str:
    if isvc is None:
        return "not found"
    ready = condition(isvc, "Ready")
    text = f"Ready={ready.get('status', 'Unknown')}"
    if ready.get("reason"):
        text += f" ({ready['reason']})"
    if ready.get("message") and ready.get("status") != "True":
        text += f": {ready['message']}"
    return text


def is_ready(isvc: dict | None) -> bool:
    return condition(isvc, "Ready").get("status") == "True"


def wait_ready(reads, namespace: str, name: str, timeout_s: float, echo=print) -> dict:
    start = time.monotonic()
    if reads.isvc_ready(namespace, name):
        return reads.isvc(namespace, name)
    last = reads.isvc(namespace, name)
    shown = describe(last)
    echo(f"inferenceservice {name}: {shown}")
    while (left := timeout_s - (time.monotonic() - start)) > 0:
        for obj in reads.watch_custom(reads_mod.KSERVE, namespace, name, int(left) + 1):
            last = obj
            now = describe(obj)
            if now != shown:
                echo(f"  +{time.monotonic() - start:.0f}s {now}")
                shown = now
            if is_ready(obj):
                return obj
            if time.monotonic() - start >= timeout_s:
                break
        else:  # the server ended the watch (its own timeout): look again, then watch again
            if reads.isvc_ready(namespace, name):
                return reads.isvc(namespace, name)
            time.sleep(min(1.0, max(0.0, timeout_s - (time.monotonic() - start))))
    raise NotReady(f"inferenceservice {namespace}/{name} not Ready after {timeout_s:g}s: {describe(last)}", last)

"""`sai metrics`: a short live summary from two scrapes of the gateway's /metrics and Triton's
metrics port, `interval` seconds apart (what Prometheus's rate() and histogram_quantile() would
say over that window):
  per function: calls/s, p50 and p99 latency, errors (status >= 400) in the window, calls in all;
  per model:    inferences/s, batches/s (executions: fewer than inferences when Triton batches),
                mean queue and compute time per inference, failures in the window.
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from sai.local.gateway_metrics import NAMESPACE

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, sorted labels) -> value


def scrape(url: str, timeout: float = 5.0) -> Samples:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode()
    return parse(text)


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            # the parser names every counter sample *_total (OpenMetrics); Triton's have no suffix
            out[(s.name.removesuffix("_total"), tuple(sorted(s.labels.items())))] = s.value
    return out


def _by(samples: Samples, name: str, key: str) -> dict[str, list[tuple[dict, float]]]:
    """Samples of `name` grouped by the value of label `key`."""
    groups: dict[str, list[tuple[dict, float]]] = defaultdict(list)
    for (n, labels), value in samples.items():
        if n == name:
            d = dict(labels)
            groups[d.get(key, "")].append((d, value))
    return groups


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile over cumulative (upper bound, count) buckets, as Prometheus computes it:
    linear within the bucket, the last finite bound when the rank falls in +Inf."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass
class FunctionRow:
    name: str
    rate: float
    p50: float | None
    p99: float | None
    errors: float
    total: float


@dataclass
class ModelRow:
    model: str
    rate: float
    batches: float
    queue_ms: float | None
    compute_ms: float | None
    failures: float


def function_rows(before: Samples, after: Samples, seconds: float) -> list[FunctionRow]:
    rows = []
    suffix = "." + NAMESPACE
    counts_after = _by(after, "gateway_functions_seconds_count", "function_name")
    replicas = _by(after, "gateway_service_count", "function_name")
    for fn in sorted(set(counts_after) | set(replicas)):

        def delta(name: str, match: Callable[[dict], bool] = lambda labels: True, fn: str = fn) -> float:
            now = sum(v for labels, v in _by(after, name, "function_name").get(fn, []) if match(labels))
            then = sum(v for labels, v in _by(before, name, "function_name").get(fn, []) if match(labels))
            return now - then

        calls = delta("gateway_functions_seconds_count")
        errors = delta("gateway_functions_seconds_count", lambda labels: int(labels.get("code", "0")) >= 400)
        buckets: dict[float, float] = defaultdict(float)
        for sign, samples in ((1, after), (-1, before)):
            for labels, v in _by(samples, "gateway_functions_seconds_bucket", "function_name").get(fn, []):
                buckets[float(labels["le"])] += sign * v
        pairs = list(buckets.items())
        total = sum(v for _, v in counts_after.get(fn, []))
        name = fn[: -len(suffix)] if fn.endswith(suffix) else fn
        rows.append(FunctionRow(name, calls / seconds, quantile(0.5, pairs), quantile(0.99, pairs), errors, total))
    return rows


def model_rows(before: Samples, after: Samples, seconds: float) -> list[ModelRow]:
    def delta(name: str) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for sign, samples in ((1, after), (-1, before)):
            for model, items in _by(samples, name, "model").items():
                out[model] += sign * sum(v for _, v in items)
        return out

    ok, failed = delta("nv_inference_request_success"), delta("nv_inference_request_failure")
    count, execs = delta("nv_inference_count"), delta("nv_inference_exec_count")
    queue_us, compute_us = delta("nv_inference_queue_duration_us"), delta("nv_inference_compute_infer_duration_us")
    rows = []
    for model in sorted(m for m in set(ok) | set(_by(after, "nv_inference_request_success", "model")) if m):
        n = ok.get(model, 0.0)
        rows.append(
            ModelRow(
                model,
                count.get(model, 0.0) / seconds,
                execs.get(model, 0.0) / seconds,
                queue_us[model] / n / 1e3 if n else None,
                compute_us[model] / n / 1e3 if n else None,
                failed.get(model, 0.0),
            )
        )
    return rows


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def report(gateway_url: str, triton_metrics_url: str | None, interval: float = 5.0) -> str:
    """Scrape both, wait `interval`, scrape again; the summary as text."""
    gw0 = scrape(gateway_url.rstrip("/") + "/metrics")
    tr0 = scrape(triton_metrics_url) if triton_metrics_url else {}
    start = time.monotonic()
    time.sleep(interval)
    gw1 = scrape(gateway_url.rstrip("/") + "/metrics")
    tr1 = scrape(triton_metrics_url) if triton_metrics_url else {}
    seconds = time.monotonic() - start
    lines = [f"over the last {seconds:.1f} s"]
    lines.append(f"{'function':22} {'calls/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'calls':>8}")
    for r in function_rows(gw0, gw1, seconds):
        lines.append(f"{r.name:22} {r.rate:8.2f} {_ms(r.p50):>8} {_ms(r.p99):>8} {r.errors:7.0f} {r.total:8.0f}")
    if triton_metrics_url:
        lines.append("")
        lines.append(f"{'Triton model':22} {'infer/s':>8} {'batch/s':>8} {'queue ms':>9} {'compute ms':>11} {'failed':>7}")
        for m in model_rows(tr0, tr1, seconds):
            queue = "-" if m.queue_ms is None else f"{m.queue_ms:.2f}"
            compute = "-" if m.compute_ms is None else f"{m.compute_ms:.2f}"
            lines.append(f"{m.model:22} {m.rate:8.2f} {m.batches:8.2f} {queue:>9} {compute:>11} {m.failures:7.0f}")
    return "\n".join(lines)

"""The gateway's Prometheus metrics (`GET /metrics`, text format, prometheus_client).

Names, labels and buckets are the OpenFaaS gateway's (openfaas/faas 0.27.13, the image OpenFaaS
chart 15.0.6 deploys: gateway/metrics/metrics.go and exporter.go; labels as
gateway/handlers/notifiers.go writes them: function_name is "<name>.<namespace>", code the HTTP
status), so dashboards and alerts made for OpenFaaS work here:
  gateway_function_invocation_total{function_name, code}   counter, calls that completed
  gateway_functions_seconds{function_name, code}           histogram (client_golang's default buckets)
  gateway_service_count{function_name}                     gauge, replicas wanted (/system/functions' replicas)
Ours, prefixed sai_:
  sai_function_inflight{function_name}                     calls in a function now (admission slots)
  sai_async_queue_depth{state}                             async calls pending (queued or running) / delivering
  sai_async_calls_finished_total{outcome}                  delivered, callback_failed, no_callback
  sai_component_restarts_total{component}                  restarts by the supervisor (tritonserver, functions)
  sai_cold_starts_total{function_name}                     wakes from zero (sai/local/scaler.py)
  sai_cold_start_seconds{function_name, phase}             histogram of each wake's phases: waiting, models,
                                                           process, imports, total (until a replica listens),
                                                           first_request (the waking call, once forwarded)
Per-function request metrics are the gateway's (the local platform has no of-watchdog, whose
metrics port serves them in a cluster): one scrape of the gateway sees every function.

Each Gateway has its own registry (tests run several platforms in one process); values that
already live elsewhere (replicas, in-flight, queue depth, restarts) are read at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

NAMESPACE = "openfaas-fn"  # what /system/functions reports, and what the label carries
CONTENT_TYPE = CONTENT_TYPE_LATEST
disable_created_metrics()  # no *_created series: the Go client that OpenFaaS uses has none
CLIENT_GONE = 499  # the code recorded when the caller disconnected first (nginx's convention)


def label(name: str) -> str:
    """The function_name label of OpenFaaS's gateway: name.namespace."""
    return f"{name}.{NAMESPACE}"


class GatewayMetrics:
    """`functions` is the gateway's name -> running function map (`.wanted`: replicas);
    `inflight(name)`, `async_depth()`, `async_outcomes()` and `restarts()` are read at scrape time."""

    def __init__(
        self,
        functions: dict,
        inflight: Callable[[str], int],
        async_depth: Callable[[], dict[str, int]] = dict,
        async_outcomes: Callable[[], dict[str, int]] = dict,
    ):
        self.functions, self.inflight = functions, inflight
        self.async_depth, self.async_outcomes = async_depth, async_outcomes
        self.restarts: Callable[[], dict[str, int]] = dict  # the platform sets its own
        self.registry = CollectorRegistry(auto_describe=True)
        self.seconds = Histogram(
            "gateway_functions_seconds", "Function time taken", ["function_name", "code"], registry=self.registry
        )
        self.completed = Counter(
            "gateway_function_invocation", "Function metrics", ["function_name", "code"], registry=self.registry
        )
        self.cold_starts = Counter("sai_cold_starts", "Wakes of a function from zero", ["function_name"], registry=self.registry)
        self.cold_start_seconds = Histogram(
            "sai_cold_start_seconds",
            "Seconds of each phase of a wake from zero",
            ["function_name", "phase"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
            registry=self.registry,
        )
        self.registry.register(_ScrapeTime(self))

    def cold_start(self, name: str, phases: dict[str, float]) -> None:
        """A wake's phases (a wake has "total"), or the waking call's "first_request"."""
        if "total" in phases:
            self.cold_starts.labels(label(name)).inc()
        for phase, seconds in phases.items():
            self.cold_start_seconds.labels(label(name), phase).observe(seconds)

    def finished(self, name: str, code: int, seconds: float) -> None:
        labels = (label(name), str(code))
        self.seconds.labels(*labels).observe(seconds)
        self.completed.labels(*labels).inc()

    def invocations(self, name: str) -> int:
        """Calls of `name`, every code: /system/functions' invocationCount, which OpenFaaS fills
        from this same counter (faas 0.27.13 gateway/metrics/add_metrics.go)."""
        return int(
            sum(
                sample.value
                for family in self.completed.collect()
                for sample in family.samples
                if sample.name.endswith("_total") and sample.labels["function_name"] == label(name)
            )
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ScrapeTime:
    """The gauges and counters whose values are kept elsewhere, read when Prometheus scrapes."""

    def __init__(self, metrics: GatewayMetrics):
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []  # names are not known before the first collect; nothing to clash with here

    def collect(self) -> Iterator[Metric]:
        m = self.m
        replicas = GaugeMetricFamily("gateway_service_count", "Current count of replicas for function", labels=["function_name"])
        inflight = GaugeMetricFamily("sai_function_inflight", "Calls a function runs now", labels=["function_name"])
        for name in sorted(m.functions):
            # the replicas wanted, as /system/functions lists them: OpenFaaS's exporter sets this
            # gauge from that list's `replicas` (faas 0.27.13 gateway/metrics/exporter.go)
            replicas.add_metric([label(name)], m.functions[name].wanted)
            inflight.add_metric([label(name)], m.inflight(name))
        depth = GaugeMetricFamily(
            "sai_async_queue_depth", "Async calls pending (queued or running) or delivering", labels=["state"]
        )
        for state, n in m.async_depth().items():
            depth.add_metric([state], n)
        outcomes = CounterMetricFamily("sai_async_calls_finished", "Async calls finished, by outcome", labels=["outcome"])
        for outcome, n in m.async_outcomes().items():
            outcomes.add_metric([outcome], n)
        restarts = CounterMetricFamily(
            "sai_component_restarts", "Restarts of a component by the supervisor", labels=["component"]
        )
        for component, n in m.restarts().items():
            restarts.add_metric([component], n)
        yield from (replicas, inflight, depth, outcomes, restarts)

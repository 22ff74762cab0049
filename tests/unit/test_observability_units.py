"""The parts of `sai metrics` and `sai logs` that need no server: Prometheus's quantile
estimate, the window's rates from two scrapes, a log's last lines, following a log, finding a
call's lines."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sai.local import logs, metrics_summary

ROOT = Path(__file__).resolve().parents[2]


def test_quantile_interpolates_within_buckets_as_prometheus_does():
    buckets = [(0.1, 50.0), (0.2, 100.0), (float("inf"), 100.0)]
    assert metrics_summary.quantile(0.5, buckets) == pytest.approx(0.1)
    assert metrics_summary.quantile(0.75, buckets) == pytest.approx(0.15)
    assert metrics_summary.quantile(0.99, [(0.1, 0.0), (float("inf"), 10.0)]) == 0.1  # in +Inf: the last bound
    assert metrics_summary.quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None  # no calls


GATEWAY = """
# TYPE gateway_functions_seconds histogram
gateway_functions_seconds_bucket{{code="200",function_name="f.openfaas-fn",le="0.01"}} {ok_fast}
gateway_functions_seconds_bucket{{code="200",function_name="f.openfaas-fn",le="0.1"}} {ok}
gateway_functions_seconds_bucket{{code="200",function_name="f.openfaas-fn",le="+Inf"}} {ok}
gateway_functions_seconds_count{{code="200",function_name="f.openfaas-fn"}} {ok}
gateway_functions_seconds_sum{{code="200",function_name="f.openfaas-fn"}} 1.0
gateway_functions_seconds_bucket{{code="400",function_name="f.openfaas-fn",le="0.01"}} {bad}
gateway_functions_seconds_bucket{{code="400",function_name="f.openfaas-fn",le="0.1"}} {bad}
gateway_functions_seconds_bucket{{code="400",function_name="f.openfaas-fn",le="+Inf"}} {bad}
gateway_functions_seconds_count{{code="400",function_name="f.openfaas-fn"}} {bad}
gateway_functions_seconds_sum{{code="400",function_name="f.openfaas-fn"}} 0.01
"""

TRITON = """
# TYPE nv_inference_request_success counter
nv_inference_request_success{{model="m",version="1"}} {n}
# TYPE nv_inference_count counter
nv_inference_count{{model="m",version="1"}} {n}
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{{model="m",version="1"}} {execs}
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{{model="m",version="1"}} {queue}
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{{model="m",version="1"}} {compute}
"""


def test_function_and_model_rows_are_the_window_between_two_scrapes():
    before = metrics_summary.parse(GATEWAY.format(ok_fast=10, ok=10, bad=0))
    after = metrics_summary.parse(GATEWAY.format(ok_fast=10, ok=30, bad=2))  # 20 slow calls + 2 errors
    (row,) = metrics_summary.function_rows(before, after, seconds=2.0)
    assert (row.name, row.rate, row.errors, row.total) == ("f", 11.0, 2.0, 32.0)
    assert 0.01 < row.p50 < 0.1 and row.p99 == pytest.approx(0.1, rel=0.05)

    t0 = metrics_summary.parse(TRITON.format(n=100, execs=50, queue=1000, compute=50000))
    t1 = metrics_summary.parse(TRITON.format(n=140, execs=60, queue=3000, compute=90000))
    (model,) = metrics_summary.model_rows(t0, t1, seconds=4.0)
    assert (model.model, model.rate, model.batches) == ("m", 10.0, 2.5)
    assert model.queue_ms == pytest.approx(0.05) and model.compute_ms == pytest.approx(1.0)


def _state_dir(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "triton").mkdir()
    (tmp_path / "logs" / "platform.log").write_text("a\ncall abcdef12-x: POST /function/f -> 200\n")
    (tmp_path / "logs" / "function-f.log").write_text("call abcdef12-x: POST / -> 200\nother\n")
    (tmp_path / "triton" / "triton.log").write_text('I1127 "[request id: abcdef12-x] Setting state"\n')
    return tmp_path


def test_find_call_lists_each_component_in_order(tmp_path):
    state = _state_dir(tmp_path)
    found = logs.find_call(state, "abcdef12-x")
    assert list(found) == ["platform", "f", "triton"]
    assert found["f"] == ["call abcdef12-x: POST / -> 200"]
    assert logs.find_call(state, "ffffffff-none") == {}
    with pytest.raises(ValueError):
        logs.find_call(state, "abc")  # too short to mean one call


def test_last_lines_reads_from_the_end_and_names_known_logs(tmp_path):
    state = _state_dir(tmp_path)
    big = "".join(f"line {i}\n" for i in range(100_000))
    (state / "logs" / "function-f.log").write_text(big)
    assert logs.last_lines(state, "f", 3) == ["line 99997", "line 99998", "line 99999"]
    with pytest.raises(KeyError, match="logs: platform, triton, f"):
        logs.last_lines(state, "nope")


def test_follow_yields_appended_lines_and_survives_truncation(tmp_path):
    path = tmp_path / "x.log"
    path.write_text("old\n")
    got, done = [], threading.Event()

    def reader():
        for line in logs.follow(path, poll_s=0.02, stop=done.is_set):
            got.append(line)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.2)
    with open(path, "a") as f:
        f.write("one\ntw")
        f.flush()
        time.sleep(0.1)
        f.write("o\n")
    time.sleep(0.2)
    path.write_text("")  # truncated (logrotate copytruncate)
    with open(path, "a") as f:
        f.write("three\n")
    deadline = time.monotonic() + 5
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    t.join(5)
    assert got == ["one", "two", "three"]


def test_dashboard_function_panels_read_series_the_local_gateway_serves():
    """The chart's dashboard and the local gateway agree: every gateway_*/sai_* series the
    dashboard queries is in the local /metrics, with the label the queries filter on."""
    import json
    import re
    import types

    from sai.local.gateway_metrics import GatewayMetrics

    dashboard = json.loads((ROOT / "charts" / "serverless-ai" / "files" / "dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    wanted = {name for e in exprs for name in re.findall(r"\b((?:gateway|sai)_\w+)\{", e)}
    assert {"gateway_function_invocation_total", "gateway_functions_seconds_bucket", "gateway_service_count"} <= wanted

    m = GatewayMetrics({"f": types.SimpleNamespace(url="http://x", wanted=1)}, inflight=lambda name: 0)
    m.finished("f", 200, 0.01)
    served = m.exposition().decode()
    for name in wanted:
        assert re.search(rf'^{name}\{{[^}}]*function_name="f\.openfaas-fn"', served, re.M), name

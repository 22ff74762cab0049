"""The benchmark commands still run and print their figures (tiny request counts, against the
session's platform): benchmarks that rot unnoticed are worse than none."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def bench(*args, env=None) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "sai", "bench", *args], capture_output=True, text=True, timeout=300, env=env or os.environ
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def last_json(out: str):
    return json.loads(out[out.index("\n[") + 1 :])


def test_bench_image(gateway):
    out = bench("image", "--gateway", gateway, "--concurrency", "1,2", "--requests", "8", "--repeats", "1", "--json")
    assert "| replicas | concurrency | in-process img/s | gateway img/s | ratio |" in out
    rows = last_json(out)
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert all(r["gateway_per_s"] > 0 and r["in_process_per_s"] > 0 and r["ratio"] > 0 for r in rows)


def test_bench_image_at_two_replicas(platform):
    """`--replicas 1,2` scales image-classify through /system/scale-function (with the platform's
    credentials, found through SAI_STATE_DIR) and measures each; it is left at the first count."""
    env = {**os.environ, "SAI_STATE_DIR": str(platform.settings.state_dir)}
    args = ("image", "--gateway", platform.gateway_url, "--replicas", "1,2", "--concurrency", "2", "--requests", "8")
    rows = last_json(bench(*args, "--repeats", "1", "--json", env=env))
    assert [(r["replicas"], r["concurrency"]) for r in rows] == [(1, 2), (2, 2)]
    assert all(r["gateway_per_s"] > 0 for r in rows)
    assert platform.functions["image-classify"].wanted == 1


def test_bench_text(gateway):
    out = bench(
        "text", "--gateway", gateway, "--concurrency", "1", "--batch", "1,4", "--sentences", "16", "--repeats", "1", "--json"
    )
    assert "in-process sent/s" in out and "gateway sent/s" in out
    rows = last_json(out)
    assert [(r["function"], r["texts_per_request"]) for r in rows] == [
        ("text-embed", 1),
        ("text-embed", 4),
        ("text-entities", 1),
        ("text-entities", 4),
    ]
    assert all(r["ratio"] > 0 for r in rows)


def test_bench_image_compare_serves_the_same_file_from_a_plain_server(gateway):
    out = bench("image", "--gateway", gateway, "--compare", "--concurrency", "1", "--requests", "8", "--repeats", "1", "--json")
    assert "| concurrency | plain server img/s | gateway img/s | gateway / plain |" in out
    assert "target: p50 latency at concurrency 1" in out
    (row,) = last_json(out)
    assert row["plain_server_per_s"] > 0 and row["plain_server_p50_ms"] > 0


def test_bench_startup_measures_ready_time_and_memory():
    out = bench("startup", "--repeats", "1", "--json")
    assert "ready s" in out and "RSS per process (MB)" in out
    only, whole, zero, kserve = last_json(out)
    # idle: no function process and no backend stub left, far below the whole platform running
    assert zero["platform"] == "at zero" and not [p for p in zero["rss_mb"] if p.startswith(("function", "triton stub"))]
    assert {"gateway", "triton core"} <= set(zero["rss_mb"])
    assert zero["rss_total_mb"] < only["rss_total_mb"]
    assert only["platform"] == "image-classify" and whole["platform"] == "all"
    # the baseline: a plain KServe ModelServer (one process) on the same file, and the ratio to it
    assert kserve["platform"] == "kserve" and 0 < kserve["rss_total_mb"] < only["rss_total_mb"]
    assert "--only image-classify / KServe ModelServer RSS:" in out
    assert 0 < only["ready_s"] < 120 and 0 < only["pss_total_mb"] <= only["rss_total_mb"]
    # --only image-classify runs one function and image_classifier's stubs; the whole platform more.
    assert [k for k in only["rss_mb"] if k.startswith("function")] == ["function image-classify"]
    assert len(only["rss_mb"]) < len(whole["rss_mb"]) and only["rss_total_mb"] < whole["rss_total_mb"]


def test_bench_coldstart_times_a_wake_from_zero_with_its_phases():
    out = bench("coldstart", "--functions", "image-classify", "--repeats", "1", "--json")
    unloaded, loaded = last_json(out)
    assert (unloaded["case"], loaded["case"]) == ("unloaded", "loaded")
    for row in (unloaded, loaded):
        assert 0 < row["first_byte_s"] <= row["total_s"] < 60 and row["warm_s"] < row["total_s"]
        assert row["phases"]["total"] > 0 and row["phases"]["process"] > 0 and row["phases"]["first_request"] > 0
    assert unloaded["phases"]["models"] > loaded["phases"]["models"]  # it loaded the model, the other found it
    assert "<= 2.0 s:" in out and "<= 1.0 s:" in out  # the targets, met or not


def test_bench_scaling_runs_its_phases():
    out = bench("scaling", "--clients", "4", "--seconds", "6", "--trickle", "4", "--json")
    doc = json.loads(out[out.index("\n{") + 1 :])
    assert doc["one_replica_per_s"] > 0 and doc["trickle_failed"] == [] and doc["failed_under_load"] == 0
    assert doc["trickle_calls"] == 4 and 0 <= doc["trickle_wakes"] <= 4
    assert "| phase" in out and "failed (target 0)" in out

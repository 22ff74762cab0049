"""tests/e2e runs only with SAI_E2E_KUBECONFIG: without it every test skips with that reason; with
it the suite's steps run, here steps 1 (ISVC Ready) and 6 (scaled to zero within the window)
against recorded objects served over HTTP (the others need a gateway, MinIO and real pods)."""

from __future__ import annotations

import os
import subprocess
import sys

from cluster_recorded import RecordedAPIServer, load

from sai.cluster.project import REPO_ROOT


def run_e2e(env: dict, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAI_E2E_")} | env
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/e2e", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_skipped_without_a_kubeconfig():
    proc = run_e2e({})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "8 skipped" in proc.stdout
    assert "SAI_E2E_KUBECONFIG is not set: the e2e suite needs a cluster" in proc.stdout


def test_runs_with_one(tmp_path):
    with RecordedAPIServer(load("isvc-ready.yaml", "revision-zero.yaml")) as server:
        kc = server.kubeconfig(tmp_path / "kc")
        proc = run_e2e(
            {"SAI_E2E_KUBECONFIG": str(kc), "SAI_E2E_GATEWAY": "http://127.0.0.1:9", "SAI_E2E_REPORT": str(tmp_path / "r.json")},
            "-k",
            "test_1 or test_6",
            "-s",
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed, 6 deselected" in proc.stdout
    assert "Triton scaled to zero after 0s" in proc.stdout
    assert '"scaled_to_zero_after_s": 0.0' in (tmp_path / "r.json").read_text()

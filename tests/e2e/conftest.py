"""The end-to-end suite against a real cluster (k8s/e2e-kind.sh runs it on kind after the
bootstrap). It runs only when SAI_E2E_KUBECONFIG names the cluster's kubeconfig, and skips with
that reason otherwise, so `make test` stays cluster-free. It uses the same library code as
`sai cluster` (sai/cluster/reads.py, wait.py, coldstart.py).

Environment:
  SAI_E2E_KUBECONFIG   kubeconfig of the cluster (required; never ~/.kube/config by default)
  SAI_E2E_GATEWAY      OpenFaaS gateway URL as the test runner reaches it (kind: http://127.0.0.1:8080)
  SAI_E2E_NAMESPACE    release namespace (default serverless-ai); the release is serverless-ai
  SAI_E2E_CALLBACK_IMAGE  image for the in-cluster callback receiver (default python:3.11-alpine)
  SAI_E2E_REPORT       if set, a JSON file the suite writes its figures to (scale to zero, cold start)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).parent
SKIP_REASON = "SAI_E2E_KUBECONFIG is not set: the e2e suite needs a cluster (k8s/e2e-kind.sh sets it)"


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SAI_E2E_KUBECONFIG"):
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def kubeconfig():
    from sai.cluster.kubeconfig import resolve

    return resolve(os.environ["SAI_E2E_KUBECONFIG"])


@pytest.fixture(scope="session")
def reads(kubeconfig):
    from sai.cluster.reads import ClusterReads

    return ClusterReads(kubeconfig)


@pytest.fixture(scope="session")
def namespace() -> str:
    return os.environ.get("SAI_E2E_NAMESPACE", "serverless-ai")


@pytest.fixture(scope="session")
def gateway() -> str:
    url = os.environ.get("SAI_E2E_GATEWAY")
    if not url:
        pytest.fail("set SAI_E2E_GATEWAY to the cluster's OpenFaaS gateway URL (kind: http://127.0.0.1:8080)")
    return url.rstrip("/")


@pytest.fixture(scope="session")
def e2e_report():
    """Figures the suite measures; written to $SAI_E2E_REPORT at the end (k8s/e2e-kind.sh prints them)."""
    report: dict = {}
    yield report
    if os.environ.get("SAI_E2E_REPORT"):
        Path(os.environ["SAI_E2E_REPORT"]).write_text(json.dumps(report, indent=2))

"""The Helm invocations `sai cluster install/uninstall` run: every change to the cluster goes
through Helm (and so through the chart's own install-time checks), never through the Python client.

`--dry-run` prints the command and renders the same chart and values with `helm template`, which
needs no cluster. (`helm install --dry-run=client` still contacts the API server when it is
given a kubeconfig: helm v3.19 checks reachability before rendering.)
"""

from __future__ import annotations

import shlex
from pathlib import Path

from sai import cluster
from sai.cluster.kubeconfig import Kubeconfig
from sai.cluster.project import CHART_DIR, KUBE_VERSION

PROFILES = ("kind", "gpu", "knative")
HELM_TIMEOUT = "10m"


def profile_values(profile: str, chart: Path = CHART_DIR) -> Path:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    return chart / f"values-{profile}.yaml"


def install_args(
    kubeconfig: Kubeconfig,
    profile: str,
    values: list[str | Path] = (),
    namespace: str = cluster.NAMESPACE,
    release: str = cluster.RELEASE,
    wait: bool = False,
    chart: Path = CHART_DIR,
) -> list[str]:
    """`helm upgrade --install` with the profile's values first, the user's after (later wins)."""
    args = ["upgrade", "--install", release, str(chart), "--namespace", namespace, "-f", str(profile_values(profile, chart))]
    for v in values:
        args += ["-f", str(v)]
    if wait:
        args += ["--wait", "--timeout", HELM_TIMEOUT]
    return args + kubeconfig.helm_args()


def template_args(install: list[str], api_versions: list[str] = ()) -> list[str]:
    """The offline render of an install: same release, chart, namespace and values files."""
    assert install[:2] == ["upgrade", "--install"], install
    out = ["template", install[2], install[3]]
    rest = install[4:]
    i = 0
    while i < len(rest):
        flag = rest[i]
        if flag in ("--namespace", "-f"):
            out += [flag, rest[i + 1]]
            i += 2
        elif flag in ("--kubeconfig", "--kube-context", "--timeout"):
            i += 2  # cluster-only
        else:
            i += 1  # --wait
    out += ["--kube-version", KUBE_VERSION, "--is-upgrade"]
    for a in api_versions:
        out += ["--api-versions", a]
    return out


def uninstall_args(
    kubeconfig: Kubeconfig, namespace: str = cluster.NAMESPACE, release: str = cluster.RELEASE, wait: bool = False
) -> list[str]:
    args = ["uninstall", release, "--namespace", namespace]
    if wait:
        args += ["--wait", "--timeout", HELM_TIMEOUT]
    return args + kubeconfig.helm_args()


def command_line(args: list[str]) -> str:
    return shlex.join(["helm", *args])

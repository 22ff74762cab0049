"""Everything `sai cluster` (and its tests) takes from the rest of the project, in one place."""

from __future__ import annotations

from sai.k8s.helm_kubectl import (
    CHART_DIR,
    KUBE_VERSION,
    REPO_ROOT,
    ManifestValidator,
    crds_dir,
    load_yaml_stream,
    run_tool,
    tool_path,
)
from sai.local.s3_server import start_s3, stop_s3
from sai.local.stack import load_stack
from sai.sai_error import SaiError
from sai.state import free_port

__all__ = [
    "CHART_DIR",
    "KUBE_VERSION",
    "REPO_ROOT",
    "ManifestValidator",
    "SaiError",
    "crds_dir",
    "free_port",
    "load_stack",
    "load_yaml_stream",
    "run_tool",
    "start_s3",
    "stop_s3",
    "tool_path",
]

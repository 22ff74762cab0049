"""Everything `sai cluster` (and its tests) takes from the rest of the project, imported in one
place. Issue 14 moves these modules (sai.k8s_tools -> sai.k8s.tools, SaiError -> sai.errors,
sai.functions -> sai.local.stack, sai.objectstore -> sai.local.s3_server, free_port -> sai.state);
each import tries the new home first, so this package works on both layouts and the fallbacks can
go once both branches have merged."""

from __future__ import annotations

try:  # after issue 14
    from sai.errors import SaiError
except ImportError:
    from sai.cli import SaiError

try:
    from sai.k8s.tools import (
        CHART_DIR,
        KUBE_VERSION,
        REPO_ROOT,
        ManifestValidator,
        crds_dir,
        load_yaml_stream,
        run_tool,
        tool_path,
    )
except ImportError:
    from sai.k8s_tools import (
        CHART_DIR,
        KUBE_VERSION,
        REPO_ROOT,
        ManifestValidator,
        crds_dir,
        load_yaml_stream,
        run_tool,
        tool_path,
    )

try:
    from sai.local.stack import load_stack
except ImportError:
    from sai.functions import load_stack

try:
    from sai.local.s3_server import start_s3, stop_s3
except ImportError:
    from sai.objectstore import start_s3, stop_s3

try:
    from sai.state import free_port
except ImportError:
    from sai.platform import free_port

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

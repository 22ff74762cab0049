"""Everything `sai cluster` (and its tests) takes from the rest of the project, imported in one
place. Issue 14 moves these modules (sai.k8s_tools -> sai.k8s.tools, SaiError -> sai.errors,
sai.functions -> sai.local.stack, sai.objectstore -> sai.local.s3_server, free_port -> sai.state);
each name is taken from its new home when that exists, so this package works on both layouts and
the old names can go once both branches have merged."""

from __future__ import annotations

import importlib


def _first(*names: str):
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise  # the module exists but something it imports is missing
    raise ModuleNotFoundError(f"none of {', '.join(names)}")


_tools = _first("sai.k8s.tools", "sai.k8s_tools")
CHART_DIR = _tools.CHART_DIR
KUBE_VERSION = _tools.KUBE_VERSION
REPO_ROOT = _tools.REPO_ROOT
ManifestValidator = _tools.ManifestValidator
crds_dir = _tools.crds_dir
load_yaml_stream = _tools.load_yaml_stream
run_tool = _tools.run_tool
tool_path = _tools.tool_path

SaiError = _first("sai.errors", "sai.cli").SaiError
load_stack = _first("sai.local.stack", "sai.functions").load_stack
_s3 = _first("sai.local.s3_server", "sai.objectstore")
start_s3, stop_s3 = _s3.start_s3, _s3.stop_s3
free_port = _first("sai.state", "sai.platform").free_port

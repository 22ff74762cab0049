"""Triton's model-control API, as `sai reload` and the Triton supervisor use it: load, unload, and
run a freshly loaded model once on zeros (sai/local/model_check.py), since the Python backend
accepts a config whose input names do not match the graph and fails only on the first request.

Each model folder is fingerprinted (every file's path, size and mtime), so a reload can tell new
and changed models from the rest. Triton runs in explicit model-control mode with the
model-repository API behind a per-run admin key (triton_server.py).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import urllib.error
import urllib.request

from sai.local.model_check import infer_zeros
from sai.local.triton_server import TritonServer
from sai.models.config import read_config


def model_fingerprints(repo: pathlib.Path) -> dict[str, str]:
    """Model name -> a digest of its folder's file names, sizes and mtimes."""
    out = {}
    for config in sorted(repo.glob("*/config.pbtxt")):
        digest = hashlib.sha256()
        for f in sorted(p for p in config.parent.rglob("*") if p.is_file()):
            st = f.stat()
            digest.update(f"{f.relative_to(config.parent)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        out[config.parent.name] = digest.hexdigest()
    return out


def call(triton: TritonServer, model: str, action: str) -> str | None:
    """POST /v2/repository/models/<model>/<action>; None when done, else Triton's message."""
    req = urllib.request.Request(
        f"http://{triton.url}/v2/repository/models/{model}/{action}",
        data=b"{}",
        method="POST",
        headers={"triton-admin-key": triton.admin_key or "", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=300):
            return None
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace")
        try:
            return str(json.loads(body).get("error", body)).strip()
        except ValueError:
            return body or str(err)
    except OSError as exc:
        return f"Triton unreachable: {exc}"


def _runs(triton: TritonServer, name: str) -> str | None:
    """None when the loaded model answers one inference on zeros; else why."""
    config_file = triton.model_repository / name / "configs" / f"{triton.config_name}.pbtxt"
    try:
        infer_zeros(
            triton.url, name, read_config(config_file if config_file.is_file() else config_file.parents[1] / "config.pbtxt")
        )
    except RuntimeError as exc:
        return f"loaded, but {exc}"
    return None


def load_checked(triton: TritonServer, name: str, new: bool) -> str | None:
    """Load (or reload) `name` and run it once; None when it serves, else why. A `new` model that
    does not run is unloaded again, not left half-working in Triton."""
    error = call(triton, name, "load")
    if error is None and (error := _runs(triton, name)) is not None and new:
        call(triton, name, "unload")
    return error

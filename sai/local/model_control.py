"""Triton's model-control API, as `sai reload` and the Triton supervisor use it: load, unload, and
run a freshly loaded model once on zeros (sai/local/model_check.py), since the Python backend
accepts a config whose input names do not match the graph and fails only on the first request.

Each model folder is fingerprinted (every file's path, size and mtime), so a reload can tell new
and changed models from the rest. Triton runs in explicit model-control mode, and load and unload
go over gRPC on the platform's private Unix socket (triton_server.py).
"""

from __future__ import annotations

import hashlib
import pathlib

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
    """Load or unload `model` (action "load" or "unload") over Triton's private gRPC socket; None
    when done, else Triton's message.

    The request is encoded here rather than with tritonclient.grpc, whose import registers
    Triton's protos in protobuf's default pool, where the kserve SDK (`sai cluster`) registers the
    same names: protobuf then refuses the second in the process (see sai/models/config.py)."""
    import grpc

    method = f"/inference.GRPCInferenceService/RepositoryModel{action.capitalize()}"
    with grpc.insecure_channel(triton.grpc_url) as channel:
        try:
            channel.unary_unary(method)(model_request(model), timeout=300)  # bytes in, bytes out
            return None
        except grpc.RpcError as exc:
            unreachable = exc.code() == grpc.StatusCode.UNAVAILABLE
            return ("Triton unreachable: " if unreachable else "") + (exc.details() or str(exc.code()))


def model_request(model: str) -> bytes:
    """RepositoryModelLoadRequest or RepositoryModelUnloadRequest (the same fields) naming `model`:
    field 2, model_name, a length-delimited string (Triton's grpc_service.proto)."""
    name = model.encode()
    return b"\x12" + _varint(len(name)) + name


def _varint(n: int) -> bytes:
    """Protobuf's base-128 varint."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _runs(triton: TritonServer, name: str) -> str | None:
    """None when the loaded model answers one inference on zeros; else why."""
    config_file = triton.model_repository / name / "configs" / f"{triton.config_name}.pbtxt"
    try:
        infer_zeros(
            triton.url, name, read_config(config_file if config_file.is_file() else config_file.parents[1] / "config.pbtxt")
        )
    except Exception as exc:  # noqa: BLE001 - whatever one model does (a config too big to check, one
        # that cannot be read), it is reported as failed and the rest of the platform keeps serving
        return f"loaded, but {exc}" if isinstance(exc, RuntimeError) else f"loaded, but its check failed: {exc!r}"
    return None


def load_checked(triton: TritonServer, name: str, new: bool) -> str | None:
    """Load (or reload) `name` and run it once; None when it serves, else why. A `new` model that
    does not run is unloaded again, not left half-working in Triton."""
    error = call(triton, name, "load")
    if error is None and (error := _runs(triton, name)) is not None and new:
        call(triton, name, "unload")
    return error

"""The chart's Triton command line, run by a real tritonserver.

The chart's args (explicit model control, strict readiness, gRPC off, restricted admin APIs) are
rendered from the kind profile and handed to the tritonserver this machine has (PyPI
nvidia-pytriton's 2.51 build; the chart pins 25.09 = 2.61, whose flags were read in
triton-inference-server/server r25.09 src/command_line_parser.cc). Only what cannot apply here is
swapped: ports, the repository path and the config name, which `sai up`'s launcher sets itself.
Kubernetes expands $(TRITON_ADMIN_KEY) from the container's env; here the test does it.
tests/test_triton_container.py runs the same args in the kind profile's container image.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient

from sai.k8s.helm_kubectl import CHART_DIR, REPO_ROOT, render_chart
from sai.local.triton_server import TritonServer
from sai.state import free_port

ADMIN_KEY = "test-admin-key-0123456789"
# Flags `TritonServer.command` sets itself, for this machine.
LOCAL_FLAGS = ("--model-repository=", "--model-config-name=", "--http-port=", "--metrics-port=")


def chart_triton_args() -> list[str]:
    objs = render_chart([CHART_DIR / "values-kind.yaml"])
    runtime = next(o for o in objs if o["kind"] == "ServingRuntime")
    args = runtime["spec"]["containers"][0]["args"]
    assert args[0] == "tritonserver"
    return [a.replace("$(TRITON_ADMIN_KEY)", ADMIN_KEY) for a in args[1:] if not a.startswith(LOCAL_FLAGS)]


@dataclasses.dataclass
class ChartTriton(TritonServer):
    chart_args: tuple[str, ...] = ()

    def command(self, dist, backends):
        # The chart's restrictions replace the local ones (Triton takes each API in one group only).
        local = [a for a in super().command(dist, backends) if not a.startswith("--http-restricted-api=")]
        return [*local, *self.chart_args]


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    server = ChartTriton(
        model_repository=REPO_ROOT / "model_repository",
        work_dir=tmp_path_factory.mktemp("chart-triton"),
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        chart_args=tuple(chart_triton_args()),
    )
    server.start()
    try:
        server.wait_ready(timeout=120)
        yield server
    finally:
        server.stop()


def request(triton, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    req = urllib.request.Request(f"http://{triton.url}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


ADMIN = {"triton-admin-key": ADMIN_KEY}


@pytest.mark.slow
def test_admin_apis_need_the_key(triton):
    for method, path, body in [
        ("POST", "/v2/repository/index", b"{}"),
        ("POST", "/v2/repository/models/image_classifier/unload", b"{}"),
        ("GET", "/v2/models/stats", None),
        ("GET", "/v2/logging", None),
        ("GET", "/v2/trace/setting", None),
    ]:
        status, text = request(triton, method, path, body=body)
        assert status == 403, (path, status, text)
        assert b"triton-admin-key" in text, text
    status, text = request(triton, "POST", "/v2/repository/index", ADMIN, b"{}")
    assert status == 200
    loaded = {m["name"] for m in json.loads(text) if m.get("state") == "READY"}
    assert {"image_classifier", "text_encoder", "sentiment_head", "text_sentiment"} <= loaded
    # The refused unload changed nothing.
    assert request(triton, "GET", "/v2/models/image_classifier/ready")[0] == 200


@pytest.mark.slow
def test_what_functions_use_stays_open(triton):
    """Health, metadata, model config (preprocessing parameters) and inference: no key needed."""
    assert request(triton, "GET", "/v2/health/ready")[0] == 200
    assert request(triton, "GET", "/v2/models/image_classifier")[0] == 200
    assert request(triton, "GET", "/v2/models/image_classifier/config")[0] == 200
    client = httpclient.InferenceServerClient(triton.url)
    meta = client.get_model_metadata("image_classifier")
    spec = meta["inputs"][0]
    shape = [1 if d == -1 else d for d in spec["shape"]]
    dtype = {"FP32": np.float32, "UINT8": np.uint8}[spec["datatype"]]
    tensor = httpclient.InferInput(spec["name"], shape, spec["datatype"])
    tensor.set_data_from_numpy(np.zeros(shape, dtype=dtype))
    result = client.infer("image_classifier", [tensor])
    assert result.as_numpy(meta["outputs"][0]["name"]) is not None


@pytest.mark.slow
def test_grpc_is_off(triton):
    """--allow-grpc=false: gRPC's own model-control RPCs are not reachable either."""
    assert not pathlib.Path(triton.grpc_url.removeprefix("unix:")).exists()  # where the local one serves gRPC
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", triton.grpc_port), timeout=2).close()

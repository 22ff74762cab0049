"""The supervisor's honesty about its own processes, on real platforms of their own: readiness
means the Triton we started answers (not whoever holds its port), missing models are named, a
function that keeps dying is restarted with back-off and then shown FAILED, state files are
private, and Triton and the functions listen on loopback even when the gateway is exposed."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest
import requests
from helpers import ROOT, running_platform

from sai.local import s3_server
from sai.local.platform import Platform, Settings
from sai.state import auth_header, free_port, state_path

pytestmark = pytest.mark.slow


class AlwaysOK(BaseHTTPRequestHandler):
    """A foreign server: 200 to everything, /v2/health/ready included."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_a_foreign_server_on_the_triton_port_is_not_readiness(tmp_path):
    foreign = ThreadingHTTPServer(("127.0.0.1", 0), AlwaysOK)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    try:
        port = foreign.server_address[1]
        with pytest.raises(RuntimeError, match="tritonserver exited"):
            with running_platform(tmp_path, triton_http_port=port, only=["image-classify"]):
                pass
    finally:
        foreign.shutdown()
    assert not state_path(tmp_path).exists()  # never reported as running


def test_missing_models_say_how_to_build_them(tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(ROOT / "model_repository", repo, ignore=shutil.ignore_patterns("1", "labels.txt"))
    with pytest.raises(RuntimeError, match="models not built: run make models") as err:
        with running_platform(tmp_path / "state", model_repository=repo, only=["image-classify"]):
            pass
    assert "image_classifier/1/model.onnx" in str(err.value)


def test_only_loads_the_models_its_functions_call(tmp_path, coffee_jpeg):
    """`--only image-classify` loads image_classifier alone: it starts without the text models
    built, and Triton reports just that model (less memory, faster ready)."""
    repo = tmp_path / "models"
    shutil.copytree(ROOT / "model_repository", repo, ignore=lambda d, names: ["1"] if "image_classifier" not in d else [])
    with running_platform(tmp_path / "state", model_repository=repo, only=["image-classify"]) as platform:
        r = requests.post(f"{platform.gateway_url}/function/image-classify", data=coffee_jpeg, timeout=30)
        assert r.status_code == 200, r.text
        triton = f"http://{platform.triton.server.url}/v2/models"
        assert requests.get(f"{triton}/image_classifier/ready", timeout=5).status_code == 200
        assert requests.get(f"{triton}/text_encoder/ready", timeout=5).status_code != 200
        assert platform.triton.loaded.keys() == {"image_classifier"}
        # `sai reload` keeps them out too (they are not even built here: loading them would fail).
        assert platform.reload()["models"] == {"loaded": [], "reloaded": [], "unloaded": [], "failed": {}}


def test_exposed_gateway_keeps_triton_and_functions_on_loopback_and_state_private(tmp_path, coffee_jpeg):
    with running_platform(tmp_path, host="0.0.0.0", only=["image-classify"]) as platform:
        r = requests.post(f"http://127.0.0.1:{platform.settings.port}/function/image-classify", data=coffee_jpeg, timeout=30)
        assert r.status_code == 200, r.text
        for pid in (platform.triton.server.process.pid, platform.functions["image-classify"].process.pid):
            listening = [c.laddr for c in psutil.Process(pid).connections("tcp") if c.status == psutil.CONN_LISTEN]
            assert listening and all(loopback(a.ip) for a in listening), listening
        private = [
            tmp_path / "run" / "state.json",
            tmp_path / "run" / "platform.pid",
            tmp_path / "async-calls.sqlite",
            tmp_path / "triton" / "triton.log",
            *(tmp_path / "logs").iterdir(),
        ]
        for path in private:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        for folder in (tmp_path, tmp_path / "run", tmp_path / "logs", tmp_path / "triton"):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def test_a_function_that_keeps_dying_backs_off_then_is_failed(tmp_path):
    """No Triton needed: the function starts without it. It is then made to die at every start
    (a bad setting), and the supervisor must space its restarts out and give up visibly."""
    settings = Settings(
        port=free_port(),
        state_dir=tmp_path,
        triton_url="127.0.0.1:9",  # nothing there: image-classify only needs it per request
        only=["image-classify"],
        restart_delay_s=0.2,
        restart_limit=3,
    )
    platform = Platform(settings)
    platform.start()
    try:
        fn = platform.functions["image-classify"]
        fn.env["MAX_IMAGE_PIXELS"] = "abc"  # every restart now exits at once
        delays, pid, died_at = [], fn.process.pid, None  # from each death seen to the next start
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while not fn.restarts.failed and time.monotonic() < deadline:
            if died_at is None and not fn.alive():
                died_at = time.monotonic()
            platform.supervise_once()
            if fn.process.pid != pid:
                pid, delays, died_at = fn.process.pid, delays + [time.monotonic() - died_at], None
            time.sleep(0.02)
        assert fn.restarts.failed and len(delays) == 3, delays
        for delay, expected in zip(delays, (0.2, 0.4, 0.8)):  # exponential, not a tight loop
            assert expected * 0.9 <= delay < expected + 0.5, delays

        state = json.loads(state_path(tmp_path).read_text())["functions"]["image-classify"]
        assert state["state"] == "FAILED" and state["restarts"] == 3
        assert "MAX_IMAGE_PIXELS" in state["last_log"]
        r = requests.post(f"{platform.gateway_url}/function/image-classify", data=b"x", timeout=10)
        assert r.status_code == 503 and r.headers["Retry-After"]

        env = {**os.environ, "SAI_STATE_DIR": str(tmp_path)}
        status = subprocess.run([sys.executable, "-m", "sai", "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 1, status.stdout + status.stderr
        assert "FAILED   function/image-classify" in status.stdout and "MAX_IMAGE_PIXELS" in status.stdout
    finally:
        platform.stop()


def test_an_old_s3_server_on_the_port_is_not_ours(tmp_path):
    """A moto left on the S3 port (a supervisor killed before this fix) answered the new one's
    readiness check, so `sai up --with-s3` went on with an S3 server that had already exited."""
    port = free_port()
    old = s3_server.start_s3(tmp_path / "old", port)
    try:
        with pytest.raises(RuntimeError, match="the S3 server exited"):
            s3_server.start_s3(tmp_path / "new", port)
    finally:
        s3_server.stop_s3(old)


def test_a_function_deployed_after_only_gets_its_models(tmp_path):
    """`sai up --only image-classify`, then `faas-cli deploy` of text-embed (POST
    /system/functions, faas-cli proxy/deploy.go's body): Triton loads text_encoder, which --only
    left out, before the function starts, so its first call answers."""
    with running_platform(tmp_path / "state", only=["image-classify"]) as platform:
        assert "text_encoder" in platform.triton.left_out
        body = {"service": "text-embed", "image": "localhost:5001/text-embed:0.1.0", "namespace": "openfaas-fn"}
        headers = auth_header(platform.settings.state_dir)
        r = requests.post(f"{platform.gateway_url}/system/functions", json=body, headers=headers, timeout=120)
        assert r.status_code in (200, 202), r.text
        assert "text_encoder" not in platform.triton.left_out
        r = requests.post(f"{platform.gateway_url}/function/text-embed", json={"text": "hello"}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["dim"] == 384 and len(r.json()["embeddings"][0]) == 384

"""Run the real `tritonserver` binary that ships in the `nvidia-pytriton` wheel, on CPU.

The wheel carries tritonserver with its Python backend and one backend stub per Python version.
We assemble a backend directory (Triton's `python` backend plus our Python-based `onnx_local`
backend), put the wheel's bundled libraries and libpython on LD_LIBRARY_PATH, and start it with
`--model-config-name=local` so every model loads its CPU config from `configs/local.pbtxt`.

The stub embeds this Python but ignores PYTHONPATH, and under numpy 2 it silently misreads tensors
("output tensor shape does not match size"; it appears to be built against the numpy 1.x C API). Its sys.path
starts with '' (the working directory), so tritonserver runs inside STUB_PACKAGES, a
`pip install --target` folder holding numpy<2 and onnxruntime that the set-up creates.
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field

from common.settings import setting
from sai.local.processes import identity, listens_on, spawn, tail, terminate_group, wait_until
from sai.state import http_ok

log = logging.getLogger(__name__)

BACKENDS_SRC = pathlib.Path(__file__).parent / "triton_backends"
STUB_PACKAGES = "triton-stub-packages"  # folder in the virtualenv, see the module docstring
# Triton's HTTP APIs that could load code (model-repository: a config + file override), read or
# write memory (shared-memory), or change what it logs and traces. They are restricted with a
# header that no HTTP request can carry: Triton (2.51.0, src/command_line_parser.cc
# ParseGenericConfigOption) takes the header name from the first ':' to the first '=', so it may
# hold a ':', while an HTTP/1.1 field name ends at its first ':' (http_server.cc
# RespondIfRestricted looks the name up whole). Whatever is on a command line is public (`ps`),
# and Triton takes this setting from its arguments only, so no secret key could be kept there.
# Model control goes over gRPC on a private Unix socket instead (TritonServer.grpc_url).
CLOSED_OVER_HTTP = "model-repository,shared-memory,statistics,trace,logging:closed:no-http-client-can-send-this=1"
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL
SAI_STUB_PACKAGES = setting("SAI_STUB_PACKAGES", str, None)  # None: <venv>/triton-stub-packages
# Which configs/<name>.pbtxt each model loads: `local_gpu` is sai/bench/gpu.sh's CUDA variant.
SAI_TRITON_CONFIG = setting("SAI_TRITON_CONFIG", str, "local")


class TritonNotInstalled(RuntimeError):
    pass


@dataclass
class TritonDist:
    """Paths inside the installed nvidia-pytriton wheel."""

    root: pathlib.Path  # .../site-packages/pytriton/tritonserver
    libs: pathlib.Path  # .../site-packages/nvidia_pytriton.libs

    @classmethod
    def find(cls) -> TritonDist:
        for base in site.getsitepackages() + [site.getusersitepackages()]:
            root = pathlib.Path(base) / "pytriton" / "tritonserver"
            if (root / "bin" / "tritonserver").is_file():
                return cls(root=root, libs=pathlib.Path(base) / "nvidia_pytriton.libs")
        raise TritonNotInstalled(
            "tritonserver not found: install it with `pip install --no-deps nvidia-pytriton==0.7.0` (the Makefile's set-up does)"
        )

    @property
    def binary(self) -> pathlib.Path:
        return self.root / "bin" / "tritonserver"

    @staticmethod
    def stub_packages() -> pathlib.Path:
        path = pathlib.Path(SAI_STUB_PACKAGES() or pathlib.Path(sys.prefix) / STUB_PACKAGES)
        if not (path / "numpy").is_dir() or not (path / "onnxruntime").is_dir():
            raise TritonNotInstalled(
                f"{path} lacks numpy<2/onnxruntime for the Triton Python stub: run "
                f"`pip install --target {path} 'numpy<2' onnxruntime` (the Makefile's set-up does)"
            )
        return path

    def stub(self) -> pathlib.Path:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise TritonNotInstalled(f"no Triton Python backend stub for Python {version}")
        return stub


def missing_models(repo: pathlib.Path) -> list[str]:
    """Model files that `sai models build` makes and the repository lacks (ensembles have none)."""
    missing = []
    for config in sorted(repo.glob("*/config.pbtxt")):
        if 'platform: "ensemble"' not in config.read_text() and not (config.parent / "1" / "model.onnx").is_file():
            missing.append(f"{config.parent.name}/1/model.onnx")
    return missing


def prepare_backends(dist: TritonDist, target: pathlib.Path) -> pathlib.Path:
    """Build `target/` = {python/ (backend + stub for this Python), onnx_local/ (ours)}."""
    py = target / "python"
    py.mkdir(parents=True, exist_ok=True)
    for src in [*(dist.root / "backends" / "python").glob("*.*"), dist.stub()]:
        if src.is_file():
            _install(src, py / src.name)
    for backend in BACKENDS_SRC.iterdir():
        if (backend / "model.py").is_file():
            (target / backend.name).mkdir(exist_ok=True)
            _install(backend / "model.py", target / backend.name / "model.py")
    return target


def _install(src: pathlib.Path, dst: pathlib.Path) -> None:
    """Copy then rename: a running stub keeps its old inode instead of failing with ETXTBSY."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copy2(src, tmp)
    tmp.replace(dst)


@dataclass
class TritonServer:
    """One tritonserver process: HTTP on loopback (the gateway is the one way in), gRPC on a Unix
    socket only the platform's user reaches (`grpc_url`). `start()` returns
    at once; `wait_ready()` waits until this process listens and /v2/health/ready says its models
    are loaded; `live()` is the supervisor's liveness probe."""

    model_repository: pathlib.Path
    work_dir: pathlib.Path  # backend directory and log live here
    http_port: int = 8000
    grpc_port: int = 8001  # names the gRPC socket (see grpc_url): gRPC is not on TCP
    metrics_port: int = 8002
    host: str = "127.0.0.1"
    config_name: str = field(default_factory=SAI_TRITON_CONFIG)
    process: subprocess.Popen | None = None
    record: dict | None = None  # pid and start time, for the state file
    probe_timeout_s: float = 3.0  # /v2/health/live answers in ms; generous so that a busy Triton is not killed
    # `sai reload`: explicit model control (every model, or `models`, loads at start); load and
    # unload go over gRPC, which Triton serves only on a Unix socket in work_dir (0700): only the
    # platform's user can connect, and no key exists for `ps` to show (CLOSED_OVER_HTTP).
    model_control: bool = False
    log_verbose: int = 0  # Triton prints request ids ("[request id: ...]") from 1 up
    # The models to load (`sai up --only`: those its functions call, sai/local/model_deps.py);
    # None loads every model in the repository.
    models: list[str] | None = None

    @property
    def url(self) -> str:
        """host:port, the form tritonclient and the functions' TRITON_URL take."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """Triton's gRPC endpoint: `<work_dir>/grpc.sock:<grpc_port>` (Triton appends ':' and the
        port to --grpc-address, src/grpc/grpc_server.cc; gRPC takes all after 'unix:' as the path)."""
        return f"unix:{self.work_dir / 'grpc.sock'}:{self.grpc_port}"

    @property
    def log_path(self) -> pathlib.Path:
        return self.work_dir / "triton.log"

    def command(self, dist: TritonDist, backends: pathlib.Path) -> list[str]:
        return [
            str(dist.binary),
            f"--model-repository={self.model_repository}",
            f"--model-config-name={self.config_name}",
            f"--backend-directory={backends}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address=unix:{self.work_dir / 'grpc.sock'}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            *(
                ["--model-control-mode=explicit", *(f"--load-model={m}" for m in (["*"] if self.models is None else self.models))]
                if self.model_control or self.models is not None
                else []
            ),
            f"--http-restricted-api={CLOSED_OVER_HTTP}",
            "--strict-readiness=true",
            # Our configs are complete: without this the Python backend starts one extra stub per
            # model just to ask model.py for a config (importing onnxruntime; ~1 s of the start).
            "--disable-auto-complete-config",
            "--exit-timeout-secs=10",
            f"--log-verbose={self.log_verbose}",
        ]

    def environment(self, dist: TritonDist) -> dict[str, str]:
        env = dict(os.environ)
        libdirs = [str(dist.libs), sysconfig.get_config_var("LIBDIR") or ""]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [d for d in libdirs if d] + [p for p in [os.environ.get("LD_LIBRARY_PATH")] if p]
        )
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def start(self) -> None:
        missing = [m for m in missing_models(self.model_repository) if self.models is None or m.split("/")[0] in self.models]
        if missing:
            raise TritonNotInstalled(f"models not built: run make models (missing: {', '.join(missing)})")
        dist = TritonDist.find()
        socket = self.grpc_url.removeprefix("unix:")
        if len(os.fsencode(socket)) > UNIX_PATH_MAX:
            raise RuntimeError(
                f"path of Triton's gRPC socket too long for a Unix socket: {socket}; set SAI_STATE_DIR to a shorter folder"
            )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.chmod(0o700)  # the gRPC socket's guard: only the platform's user may connect
        backends = prepare_backends(dist, self.work_dir / "backends")
        cmd = self.command(dist, backends)
        log.info("starting tritonserver on %s (log: %s)", self.url, self.log_path)
        # its own process group: stopped with its backend stubs
        self.process = spawn(
            cmd,
            self.log_path,
            cwd=dist.stub_packages(),  # first on the stub's sys.path; see the module docstring
            env=self.environment(dist),
        )
        self.record = identity(self.process.pid)

    def is_ready(self) -> bool:
        """Our process listens on the HTTP port and its models are loaded (strict readiness): a
        foreign server on the port, or an old Triton left there, does not count."""
        return (
            self.running()
            and self.process is not None
            and listens_on(self.process.pid, self.http_port)
            and http_ok(f"http://{self.url}/v2/health/ready", timeout=1)
        )

    def live(self) -> bool:
        """The liveness probe: a stopped or hung Triton does not answer within the timeout."""
        return http_ok(f"http://{self.url}/v2/health/live", timeout=self.probe_timeout_s)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = 120.0) -> None:
        def exited() -> str | None:
            if self.running():
                return None
            return (
                f"tritonserver exited with code {self.process and self.process.returncode}; "
                f"see {self.log_path}:\n{tail(self.log_path)}"
            )

        if not wait_until(self.is_ready, timeout, interval=0.05, fail=exited):
            raise TimeoutError(f"tritonserver not ready after {timeout:.0f}s; see {self.log_path}")

    def kill(self) -> None:
        """A hung Triton (or a stopped one) ignores SIGTERM: SIGKILL its group at once."""
        if self.process is not None:
            terminate_group(self.process, 0)

    def stop(self, timeout: float = 15.0) -> None:
        # Even when tritonserver itself has died, its backend stubs may live on in its group.
        if self.process is None:
            return
        terminate_group(self.process, timeout)
        log.info("tritonserver stopped")

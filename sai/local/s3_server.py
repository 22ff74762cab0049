"""Local S3-compatible object storage for the embedded platform: moto's S3 on loopback, behind a
check that every request is signed with credentials generated at each start (s3_auth.py).

`sai up --with-s3` calls `start_s3()` (the platform owns the lifecycle; `stop_s3()` on `sai down`).
The server is this module run as a process (`main`); its secret key arrives on its stdin, never on
its command line. The credentials are recorded, 0600, in `<state>/s3.json` for `sai s3` and passed
to object-classify. moto cannot send bucket notifications: the platform's watcher (s3_events.py)
sends them instead. moto keeps objects in memory: they live as long as the platform runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import secrets
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from common.result_keys import RESULTS_PREFIX
from sai.local.processes import listens_on, running_with, spawn, wait_until

BUCKET = "uploads"
REGION = "us-east-1"
ACCESS_KEY = "sai-local"  # an id, not a secret; the secret key is generated at each start
STATE_FILE = "s3.json"
MODULE = "sai.local.s3_server"  # the server process's command line names it (see _is_ours)


@dataclass
class S3Handle:
    endpoint: str  # e.g. http://127.0.0.1:9000
    bucket: str
    region: str
    access_key: str
    secret_key: str
    pid: int
    log_path: str

    def client(self) -> Any:  # a boto3 S3 client
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(connect_timeout=2, retries={"max_attempts": 2}, s3={"addressing_style": "path"}),
        )


def function_env(handle: S3Handle) -> dict[str, str]:
    """Environment for object-classify so it talks to this server and its bucket, whatever
    stack.yml's cluster settings (S3_ENDPOINT, UPLOADS_BUCKET) say (credentials as env: the local
    platform has no OpenFaaS secret files)."""
    return {
        "S3_ENDPOINT": handle.endpoint,
        "S3_REGION": handle.region,
        "S3_ACCESS_KEY_ID": handle.access_key,
        "S3_SECRET_ACCESS_KEY": handle.secret_key,
        "RESULTS_BUCKET": handle.bucket,
        "RESULTS_PREFIX": RESULTS_PREFIX,
        "SOURCE_BUCKETS": handle.bucket,
    }


def start_s3(
    state_dir: str | os.PathLike,
    port: int,
    host: str = "127.0.0.1",
    bucket: str = BUCKET,
    timeout: float = 30.0,
) -> S3Handle:
    """Start the moto server in its own session (it outlives a backgrounding `sai up`), wait
    until it answers, create the bucket and record the handle in `<state_dir>/s3.json`."""
    state = pathlib.Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    log_path = state / "s3.log"
    secret_key = secrets.token_urlsafe(30)
    # gone with the supervisor, even after kill -9
    proc = spawn([sys.executable, "-m", MODULE, "--host", host, "--port", str(port)], log_path, stdin=subprocess.PIPE)
    assert proc.stdin is not None  # stdin=PIPE
    proc.stdin.write(f"{secret_key}\n".encode())
    proc.stdin.close()
    handle = S3Handle(
        endpoint=f"http://{host}:{port}",
        bucket=bucket,
        region=REGION,
        access_key=ACCESS_KEY,
        secret_key=secret_key,
        pid=proc.pid,
        log_path=str(log_path),
    )
    client = handle.client()

    def bucket_ready() -> bool:
        if not listens_on(proc.pid, port):  # another server on the port (an old moto) is not ours
            return False
        from botocore.exceptions import ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            client.create_bucket(Bucket=bucket)
        except (BotoConnectionError, HTTPClientError):  # refused, reset or timed out: not listening yet
            return False
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return True
            raise
        return True

    def exited() -> str | None:
        return None if proc.poll() is None else f"the S3 server exited with {proc.returncode}; see {log_path}"

    if not wait_until(bucket_ready, timeout, fail=exited):
        _terminate(proc.pid)
        raise RuntimeError(f"the S3 server did not start in {timeout:.0f} s; see {log_path}")
    fd = os.open(state / STATE_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the secret key
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(asdict(handle), indent=2))
    return handle


def load_handle(state_dir: str | os.PathLike) -> S3Handle | None:
    try:
        return S3Handle(**json.loads((pathlib.Path(state_dir) / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def stop_s3(handle: S3Handle | None, state_dir: str | os.PathLike | None = None, timeout: float = 10.0) -> None:
    """Stop the server (from this process or from `sai down` in another one) and forget it."""
    if handle is not None:
        _terminate(handle.pid, timeout)
    if state_dir is not None:
        (pathlib.Path(state_dir) / STATE_FILE).unlink(missing_ok=True)


def is_running(handle: S3Handle) -> bool:
    return _is_ours(handle.pid)


def _is_ours(pid: int) -> bool:
    """Guard against signalling a recycled pid: only an S3 server of ours is ever signalled."""
    return running_with(pid, MODULE)


def _terminate(pid: int, timeout: float = 10.0) -> None:
    if not _is_ours(pid):
        return
    os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        try:
            # Reap it when it is our child; otherwise just watch it disappear.
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        return not _is_ours(pid)

    if wait_until(gone, timeout, interval=0.1):
        return
    os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def main(argv: list[str] | None = None) -> int:
    """The server process: moto's S3 application behind s3_auth.SignedOnly, threaded like moto's own."""
    parser = argparse.ArgumentParser(description="The local S3 server: moto, signed requests only (secret key on stdin).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    secret_key = sys.stdin.readline().strip()
    if not secret_key:
        parser.error("no secret key on stdin")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    from sai.local.s3_auth import SignedOnly

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = SignedOnly(DomainDispatcherApplication(create_backend_app), ACCESS_KEY, secret_key, logging.getLogger("sai.s3"))
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Local S3-compatible object storage for the embedded platform: the moto server on loopback.

`sai up --with-s3` calls `start_s3()` (the platform owns the lifecycle; `stop_s3()` on `sai down`).
moto cannot send bucket notifications, so `sai s3 upload` does what a MinIO bucket notification
would: it uploads the file, then POSTs the S3 event (MinIO webhook format) to object-classify.
moto keeps objects in memory: they live as long as the platform runs.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import asdict, dataclass

BUCKET = "uploads"
REGION = "us-east-1"
# moto accepts any credentials; fixed ones keep the function's configuration explicit.
ACCESS_KEY = "sai-local"
SECRET_KEY = "sai-local-secret"
STATE_FILE = "s3.json"
FUNCTION = "object-classify"
RESULTS_PREFIX = "results/"


def input_prefix() -> str:
    """Where object-classify listens (its INPUT_PREFIX in stack.yml), so uploads trigger it."""
    from sai import paths
    from sai.functions import load_stack

    fn = load_stack(paths.repo_root() / "stack.yml").functions.get("object-classify")
    return fn.environment.get("INPUT_PREFIX", "") if fn else ""


@dataclass
class S3Handle:
    endpoint: str  # e.g. http://127.0.0.1:9000
    bucket: str
    region: str
    access_key: str
    secret_key: str
    pid: int
    log_path: str

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                connect_timeout=2, retries={"max_attempts": 2}, s3={"addressing_style": "path"}
            ),
        )


def function_env(handle: S3Handle) -> dict[str, str]:
    """Environment for object-classify so it talks to this server (credentials as env: the local
    platform has no OpenFaaS secret files)."""
    return {
        "S3_ENDPOINT": handle.endpoint,
        "S3_REGION": handle.region,
        "S3_ACCESS_KEY_ID": handle.access_key,
        "S3_SECRET_ACCESS_KEY": handle.secret_key,
        "RESULTS_PREFIX": RESULTS_PREFIX,
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
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    handle = S3Handle(
        endpoint=f"http://{host}:{port}",
        bucket=bucket,
        region=REGION,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        pid=proc.pid,
        log_path=str(log_path),
    )
    client = handle.client()
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the S3 server exited with {proc.returncode}; see {log_path}")
        try:
            client.create_bucket(Bucket=bucket)
            break
        except Exception as exc:  # noqa: BLE001 - not listening yet
            if "BucketAlready" in str(exc):
                break
            if time.monotonic() > deadline:
                _terminate(proc.pid)
                raise RuntimeError(f"the S3 server did not start in {timeout:.0f} s; see {log_path}")
            time.sleep(0.2)
    (state / STATE_FILE).write_text(json.dumps(asdict(handle), indent=2))
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
    return _is_moto(handle.pid)


def _is_moto(pid: int) -> bool:
    """Guard against signalling a recycled pid: only a moto server of ours is ever signalled."""
    try:
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"moto.server" in cmdline


def _terminate(pid: int, timeout: float = 10.0) -> None:
    if not _is_moto(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # Reap it when it is our child; otherwise just watch it disappear.
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if not _is_moto(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def minio_event(bucket: str, key: str, size: int, etag: str, event_name: str = "s3:ObjectCreated:Put") -> dict:
    """An S3 event notification as MinIO's webhook target sends it (key URL-encoded)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    enc_key = urllib.parse.quote_plus(key, safe="")  # url.QueryEscape, as MinIO does
    return {
        "EventName": event_name,
        "Key": f"{bucket}/{key}",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "awsRegion": "",
                "eventTime": now,
                "eventName": event_name,
                "userIdentity": {"principalId": ACCESS_KEY},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "Config",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": ACCESS_KEY},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": enc_key,
                        "size": size,
                        "eTag": etag.strip('"'),
                        "contentType": "application/octet-stream",
                        "sequencer": f"{time.time_ns():X}",
                    },
                },
                "source": {"host": "127.0.0.1", "port": "", "userAgent": "sai"},
            }
        ],
    }


# ---------------------------------------------------------------- CLI: sai s3 upload / result


def _state_dir(args) -> pathlib.Path:
    if args.state_dir:
        return pathlib.Path(args.state_dir)
    from sai.paths import state_dir

    return state_dir()


def _handle_or_fail(args) -> S3Handle:
    from sai.cli import SaiError

    handle = load_handle(_state_dir(args))
    if handle is None or not is_running(handle):
        raise SaiError("no local S3 server is running: start the platform with `sai up --with-s3`", 3)
    return handle


def _gateway(args) -> str:
    """--gateway, else $OPENFAAS_URL (as faas-cli), else the running platform's, else :8080."""
    url = args.gateway or os.environ.get("OPENFAAS_URL")
    if not url:
        from sai.platform import read_state

        url = read_state(_state_dir(args)).get("gateway") or "http://127.0.0.1:8080"
    return url.rstrip("/")


def cmd_upload(args) -> int:
    import requests

    from sai.cli import SaiError

    handle = _handle_or_fail(args)
    path = pathlib.Path(args.file)
    if not path.is_file():
        raise SaiError(f"{path}: no such file", 2)
    key = args.key or input_prefix() + path.name
    data = path.read_bytes()
    client = handle.client()
    put = client.put_object(Bucket=handle.bucket, Key=key, Body=data)
    print(f"uploaded s3://{handle.bucket}/{key} ({len(data)} bytes, eTag {put['ETag']})")
    event = minio_event(handle.bucket, key, len(data), put["ETag"])
    url = f"{_gateway(args)}/function/{FUNCTION}"
    try:
        resp = requests.post(url, json=event, timeout=args.timeout)
    except requests.RequestException as exc:
        raise SaiError(f"could not notify {url}: {exc}", 4) from None
    try:
        body = resp.json()
    except ValueError:
        raise SaiError(f"{url} answered {resp.status_code}: {resp.text[:200]}", 4) from None
    print(json.dumps(body, indent=2, ensure_ascii=False))
    statuses = {r.get("status") for r in body.get("records", [])}
    return 0 if resp.ok and statuses <= {"classified", "duplicate"} else 1


def cmd_result(args) -> int:
    from sai.cli import SaiError

    handle = _handle_or_fail(args)
    client = handle.client()
    key = RESULTS_PREFIX + args.key + ".json"
    deadline = time.monotonic() + args.wait
    while True:
        try:
            obj = client.get_object(Bucket=handle.bucket, Key=key)
            break
        except client.exceptions.NoSuchKey:
            if time.monotonic() >= deadline:
                raise SaiError(f"no result for {args.key!r} (s3://{handle.bucket}/{key})", 1) from None
            time.sleep(0.5)
    print(json.dumps(json.loads(obj["Body"].read()), indent=2, ensure_ascii=False))
    return 0


def register(sub) -> None:
    parser = sub.add_parser(
        "s3",
        help="local object storage: upload an image (triggers object-classify), show results",
        description="Try the S3 event flow on one machine (needs `sai up --with-s3`).",
    )
    s3 = parser.add_subparsers(dest="s3_command", metavar="S3_COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", help="platform state folder (default: <repo>/.sai or $SAI_STATE_DIR)")

    up = s3.add_parser(
        "upload",
        parents=[common],
        help="upload FILE to the bucket and send the S3 event to object-classify",
        description="Upload FILE to the local bucket, then POST the bucket notification (MinIO "
        "webhook format) to the gateway's object-classify function and print its per-record status.",
    )
    up.add_argument("file", metavar="FILE")
    up.add_argument("--key", help="object key (default: object-classify's INPUT_PREFIX + the file name)")
    up.add_argument("--gateway", help="gateway URL (default: $OPENFAAS_URL, else the running platform's)")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the function")
    up.set_defaults(func=cmd_upload)

    res = s3.add_parser(
        "result",
        parents=[common],
        help="print the stored classification result of KEY",
        description=f"Print the result object {RESULTS_PREFIX}<KEY>.json as JSON.",
    )
    res.add_argument("key", metavar="KEY")
    res.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the result to appear")
    res.set_defaults(func=cmd_result)

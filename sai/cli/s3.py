"""`sai s3 upload | result`: try object-classify's S3 event flow on one machine (needs
`sai up --with-s3`). `upload` puts a file in the local bucket and then does what a MinIO bucket
notification would: it POSTs the S3 event to object-classify through the gateway."""

from __future__ import annotations

import argparse
import json
import pathlib

from common.settings import setting
from sai import paths
from sai.errors import SaiError
from sai.local.processes import wait_until
from sai.local.s3_events import minio_event
from sai.local.s3_server import RESULTS_PREFIX, S3Handle, is_running, load_handle
from sai.local.stack import load_stack
from sai.state import read_state

FUNCTION = "object-classify"
OPENFAAS_URL = setting("OPENFAAS_URL", str, None)  # the gateway, as faas-cli reads it


def input_prefix() -> str:
    """Where object-classify listens (its INPUT_PREFIX in stack.yml), so uploads trigger it."""
    fn = load_stack(paths.repo_root() / "stack.yml").functions.get("object-classify")
    return fn.environment.get("INPUT_PREFIX", "") if fn else ""


def _state_dir(args) -> pathlib.Path:
    if args.state_dir:
        return pathlib.Path(args.state_dir)
    return paths.state_dir()


def _handle_or_fail(args) -> S3Handle:
    handle = load_handle(_state_dir(args))
    if handle is None or not is_running(handle):
        raise SaiError("no local S3 server is running: start the platform with `sai up --with-s3`", 3)
    return handle


def _gateway(args) -> str:
    """--gateway, else $OPENFAAS_URL (as faas-cli), else the running platform's, else :8080."""
    url = args.gateway or OPENFAAS_URL()
    if not url:
        url = read_state(_state_dir(args)).get("gateway") or "http://127.0.0.1:8080"
    return url.rstrip("/")


def cmd_upload(args) -> int:
    import requests

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
    handle = _handle_or_fail(args)
    client = handle.client()
    key = RESULTS_PREFIX + args.key + ".json"

    def fetch():
        try:
            return client.get_object(Bucket=handle.bucket, Key=key)
        except client.exceptions.NoSuchKey:
            return None

    obj = wait_until(fetch, args.wait, interval=0.5)
    if obj is None:
        raise SaiError(f"no result for {args.key!r} (s3://{handle.bucket}/{key})", 1)
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

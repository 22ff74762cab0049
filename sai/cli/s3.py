"""`sai s3 upload | result`: try object-classify's S3 event flow on one machine (needs
`sai up --with-s3`). `upload` puts a file in the local bucket (any S3 client's upload does the same
thing: the platform notifies object-classify as MinIO does) and waits for its result."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from common.result_keys import RESULTS_PREFIX, result_key
from sai import paths
from sai.local import s3_events
from sai.local.processes import wait_until
from sai.local.s3_server import S3Handle, is_running, load_handle
from sai.local.stack import load_stack
from sai.sai_error import SaiError

FUNCTION = "object-classify"


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


def cmd_upload(args) -> int:
    handle = _handle_or_fail(args)
    path = pathlib.Path(args.file)
    if not path.is_file():
        raise SaiError(f"{path}: no such file", 2)
    key = args.key or input_prefix() + path.name
    data = path.read_bytes()
    client = handle.client()
    put = client.put_object(Bucket=handle.bucket, Key=key, Body=data)
    etag = put["ETag"].strip('"')
    if not key.startswith(input_prefix()):  # MinIO notifies only under the prefix: nothing to wait for
        print(f"uploaded s3://{handle.bucket}/{key} ({len(data)} bytes); outside {input_prefix()!r}, so no event")
        return 0
    # Like any client's upload, the platform sees it and notifies object-classify as MinIO would,
    # redelivering until it is classified (sai/local/s3_events.py).
    print(f"uploaded s3://{handle.bucket}/{key} ({len(data)} bytes, eTag {etag}); {FUNCTION} is notified")
    doc = _wait_for_result(client, handle.bucket, key, etag, args.timeout)
    if doc is None:
        print(
            f"not classified within {args.timeout:.0f}s: the event stays queued and is redelivered every "
            f"{s3_events.RETRY_INTERVAL_S:.0f}s until {FUNCTION} answers; check `sai status` and "
            f"`sai s3 result {key} --wait 60`",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


def _wait_for_result(client, bucket: str, key: str, etag: str, timeout: float) -> dict | None:
    """The result document for this version of the object (same source eTag), or None."""
    result = result_key(bucket, key)

    def fetch():
        try:
            doc = json.loads(client.get_object(Bucket=bucket, Key=result)["Body"].read())
        except client.exceptions.NoSuchKey:
            return None
        return doc if doc.get("source", {}).get("etag") == etag else None

    return wait_until(fetch, timeout, interval=0.3)


def cmd_result(args) -> int:
    handle = _handle_or_fail(args)
    client = handle.client()
    key = result_key(handle.bucket, args.key)

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
        help="upload FILE to the bucket; object-classify classifies it",
        description="Upload FILE to the local bucket. The platform notifies object-classify as MinIO does "
        "(webhook format, redelivered until it answers 2xx). Prints the classification once it is stored "
        "(exit 0), or exits 1 if it is not there in time (the event stays queued).",
    )
    up.add_argument("file", metavar="FILE")
    up.add_argument("--key", help="object key (default: object-classify's INPUT_PREFIX + the file name)")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the result (default: %(default)s)")
    up.set_defaults(func=cmd_upload)

    res = s3.add_parser(
        "result",
        parents=[common],
        help="print the stored classification result of KEY",
        description=f"Print the result object {RESULTS_PREFIX}<bucket>/<KEY>.json as JSON.",
    )
    res.add_argument("key", metavar="KEY")
    res.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the result to appear")
    res.set_defaults(func=cmd_result)

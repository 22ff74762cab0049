"""The local S3 server takes only requests signed with the credentials generated at its start
(docs/reliability.md, 14; sai/local/s3_auth.py): over HTTP, against the real server process, what
another local process may try. Before, moto accepted unsigned and badly signed writes, so any
local process could overwrite object-classify's results, and its /moto-api/ could wipe them."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import subprocess

import boto3
import psutil
import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from sai.local import s3_server
from sai.state import free_port

RESULT = "results/uploads/incoming/cat.jpg.json"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    handle = s3_server.start_s3(tmp_path_factory.mktemp("s3-auth"), free_port())
    handle.client().put_object(Bucket=handle.bucket, Key=RESULT, Body=b'{"label": "tiger cat"}')
    yield handle
    s3_server.stop_s3(handle)


def stored(s3) -> bytes:
    return s3.client().get_object(Bucket=s3.bucket, Key=RESULT)["Body"].read()


def signed(s3, method, key, body, secret=None, when=None) -> AWSRequest:
    """A request signed as botocore signs it, with `secret` (default: the right one) at `when`."""
    request = AWSRequest(method=method, url=f"{s3.endpoint}/{s3.bucket}/{key}", data=body)
    auth = S3SigV4Auth(Credentials(s3.access_key, secret or s3.secret_key), "s3", s3.region)
    if when is None:
        auth.add_auth(request)
    else:  # botocore signs "now": sign at another time by hand
        request.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
        auth._modify_request_before_signing(request)
        canonical = auth.canonical_request(request)
        signature = auth.signature(auth.string_to_sign(request, canonical), request)
        auth._inject_signature_to_request(request, signature)
    return request


def send(request: AWSRequest, body=None) -> requests.Response:
    headers = dict(request.headers.items())
    return requests.request(request.method, request.url, headers=headers, data=request.body if body is None else body, timeout=10)


def assert_refused(r: requests.Response, code: str):
    assert r.status_code == 403 and f"<Code>{code}</Code>" in r.text, (r.status_code, r.text)


def test_unsigned_and_badly_signed_writes_are_refused(s3):
    before = stored(s3)
    assert_refused(requests.put(f"{s3.endpoint}/{s3.bucket}/{RESULT}", data=b"forged", timeout=10), "AccessDenied")
    assert_refused(requests.delete(f"{s3.endpoint}/{s3.bucket}/{RESULT}", timeout=10), "AccessDenied")
    assert_refused(send(signed(s3, "PUT", RESULT, b"forged", secret="guessed")), "SignatureDoesNotMatch")
    # another access key id, even with moto's usual test credentials
    other = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name=s3.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):
        other.put_object(Bucket=s3.bucket, Key=RESULT, Body=b"forged")
    # a correctly signed request whose body was swapped, and one replayed 20 minutes later
    assert_refused(send(signed(s3, "PUT", RESULT, b"honest"), body=b"forged"), "XAmzContentSHA256Mismatch")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    assert_refused(send(signed(s3, "PUT", RESULT, b"forged", when=old)), "RequestTimeTooSkewed")
    # moto's own API (reset everything, switch its auth off) is closed
    assert_refused(requests.post(f"{s3.endpoint}/moto-api/reset", timeout=10), "AccessDenied")
    assert_refused(requests.post(f"{s3.endpoint}/moto-api/reset-auth", data=b"inf", timeout=10), "AccessDenied")
    assert stored(s3) == before
    # the generated credentials work, signed by hand or by boto3
    assert send(signed(s3, "PUT", "incoming/ok.txt", b"fine")).status_code == 200
    s3.client().put_object(Bucket=s3.bucket, Key="incoming/ok b+c.txt", Body=b"fine", Metadata={"k": "v"})
    assert s3.client().head_object(Bucket=s3.bucket, Key="incoming/ok b+c.txt")["Metadata"] == {"k": "v"}


def test_the_secret_key_is_generated_and_kept_private(s3, tmp_path):
    record = os.path.join(os.path.dirname(s3.log_path), s3_server.STATE_FILE)
    assert stat.S_IMODE(os.stat(record).st_mode) == 0o600
    assert s3.secret_key not in " ".join(psutil.Process(s3.pid).cmdline())  # ps shows every user's argv
    again = s3_server.start_s3(tmp_path, free_port())
    try:
        assert again.secret_key != s3.secret_key and len(again.secret_key) >= 32
    finally:
        s3_server.stop_s3(again)


NOBODY = """
import json, sys, urllib.error, urllib.request
try:
    open(sys.argv[1]).read()
    print("read the credentials")
except PermissionError:
    print("credentials: permission denied")
request = urllib.request.Request(sys.argv[2], data=b"forged", method="PUT")
try:
    urllib.request.urlopen(request, timeout=10)
    print("write accepted")
except urllib.error.HTTPError as exc:
    print(f"write: {exc.code}")
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"),
    reason="switching uid needs root, setpriv and a Python any user may run",
)
def test_another_local_user_can_neither_read_the_keys_nor_write(tmp_path):
    """The probe's case, as another uid (setpriv, as CI runs as root): the state folder is the
    platform's (0700, s3.json 0600), and without the keys a write is refused."""
    from sai.state import make_private

    shared = tmp_path / "shared"
    shared.mkdir()
    tmp_path.chmod(0o755)  # reachable by others: the modes below are what protects the keys
    shared.chmod(0o755)
    state = shared / "state"
    make_private(state)
    handle = s3_server.start_s3(state, free_port())
    try:
        handle.client().put_object(Bucket=handle.bucket, Key=RESULT, Body=b"real")
        run = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", NOBODY,
             str(state / s3_server.STATE_FILE), f"{handle.endpoint}/{handle.bucket}/{RESULT}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.stdout.split("\n")[:2] == ["credentials: permission denied", "write: 403"], run.stdout + run.stderr
        assert handle.client().get_object(Bucket=handle.bucket, Key=RESULT)["Body"].read() == b"real"
    finally:
        s3_server.stop_s3(handle)

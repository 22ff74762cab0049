"""The local S3 server's door: only requests signed with the platform's generated credentials
reach moto (AWS Signature Version 4, as boto3, the AWS CLI and MinIO's clients sign them).

moto's own server accepts any request, unsigned or badly signed, so any local process could
overwrite results; and its `/moto-api/` answers anyone (reset every bucket, switch its optional
IAM check off again through `/moto-api/reset-auth`: moto 5 core/authorization.py and
moto_api/_internal/responses.py). So the check is a WSGI layer of our own in front of moto's
application, in the same process (sai/local/s3_server.py), and `/moto-api/` is closed.

What is checked (the algorithm of AWS's "Create a signed AWS API request" page, the one botocore's
SigV4Auth implements in auth.py): the Authorization header's credential names our access key, the
signature over the method, path, query, the signed headers and the payload hash matches our
secret key, X-Amz-Date is within 15 minutes (AWS's own skew limit, so a captured request cannot be
replayed later), and a payload hash that is a digest matches the body. Streaming uploads
(`STREAMING-*`, aws-chunked) are checked on their seed signature; their chunk signatures are not.
Presigned URLs (query-string auth) are refused: nothing here makes them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any
from xml.sax.saxutils import escape

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = dt.timedelta(minutes=15)
AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^,]+),\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})$")
DIGEST = re.compile(r"^[0-9a-f]{64}$")


class Refused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def canonical_query(query: str) -> str:
    """The query's pairs sorted, as sent (clients send them URI-encoded already)."""
    pairs = sorted(tuple(p.partition("=")[::2]) for p in query.split("&")) if query else []
    return "&".join(f"{k}={v}" for k, v in pairs)


def check(method: str, target: str, headers: Any, body: bytes, access_key: str, secret_key: str, now: dt.datetime) -> None:
    """Refused (with an S3 error code) unless the request is signed with these credentials.
    `target` is the request line's path and query as sent; `headers` is case-insensitive (werkzeug's)."""
    path, _, query = target.partition("?")
    header = headers.get("Authorization")
    if header is None:
        why = "presigned URLs are not accepted here" if "Signature=" in query else "the request is not signed"
        raise Refused("AccessDenied", f"{why}: sign it with the credentials `sai up --with-s3` generated (.sai/s3.json)")
    match = AUTH.match(header.strip())
    if match is None:
        raise Refused("AccessDenied", f"only {ALGORITHM} signatures are accepted")
    credential, signed, signature = match.groups()
    key, date, region, service, terminal = (credential.split("/") + [""] * 5)[:5]
    if not hmac.compare_digest(key.encode(), access_key.encode()) or terminal != "aws4_request":
        raise Refused("InvalidAccessKeyId", "the access key is not this server's")
    stamp = headers.get("X-Amz-Date", "")
    try:
        when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise Refused("AccessDenied", "X-Amz-Date is missing or not YYYYMMDDTHHMMSSZ") from None
    if abs(now - when) > MAX_SKEW or stamp[:8] != date:
        raise Refused("RequestTimeTooSkewed", "the request's time is more than 15 minutes from the server's")
    names = signed.split(";")
    if not {"host", "x-amz-date", "x-amz-content-sha256"} <= set(names):
        raise Refused("AccessDenied", "the signature must cover host, x-amz-date and x-amz-content-sha256")
    payload = headers.get("X-Amz-Content-SHA256", "")
    if DIGEST.match(payload) and not hmac.compare_digest(payload, hashlib.sha256(body).hexdigest()):
        raise Refused("XAmzContentSHA256Mismatch", "the body does not match its signed SHA-256")
    canonical_headers = "".join(f"{n}:{' '.join((headers.get(n) or '').split())}\n" for n in names)
    canonical = "\n".join([method, path, canonical_query(query), canonical_headers, signed, payload])
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing_key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), date), region), service), "aws4_request")
    expected = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise Refused("SignatureDoesNotMatch", "the signature does not match this server's credentials")


class SignedOnly:
    """WSGI middleware: moto's application behind `check`; `/moto-api/` closed to everyone."""

    def __init__(self, app: Callable, access_key: str, secret_key: str, log: logging.Logger | None = None):
        self.app, self.access_key, self.secret_key, self.log = app, access_key, secret_key, log

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        from werkzeug.wrappers import Request

        request = Request(environ)
        target = environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.full_path
        body = request.get_data(cache=True)
        try:
            if request.path.startswith("/moto-api"):
                raise Refused("AccessDenied", "moto's own API is closed on this server")
            now = dt.datetime.now(dt.UTC)
            check(request.method, target, request.headers, body, self.access_key, self.secret_key, now)
        except Refused as refused:
            if self.log is not None:
                self.log.warning("refused %s %s from %s: %s", request.method, target[:200], request.remote_addr, refused.message)
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{refused.code}</Code>'
                f"<Message>{escape(refused.message)}</Message></Error>"
            ).encode()
            start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(xml)))])
            return [xml]
        environ["wsgi.input"] = io.BytesIO(body)  # read once here; moto reads it again
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

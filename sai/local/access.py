"""Who may call the gateway, and what of the caller reaches a function.

- Host names: the gateway answers only requests whose Host is an IP literal, localhost, this
  machine's name, the address it binds, or a name given with `sai up --allow-host` (400 otherwise):
  DNS rebinding (a page of attacker.example whose name then resolves to 127.0.0.1) sends its own
  name as Host.
- Basic auth as the OpenFaaS gateway has it (faas-provider auth/v1/basic_auth.go:
  `WWW-Authenticate: Basic realm="Restricted"`, 401) guards /system/* and, when asked
  (--auth-functions), /function/* and /async-function/*.
- A function never receives the gateway's own credentials or the caller's cookies.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from sai.local.responses import error_response as error
from sai.local.responses import forwardable

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Access:
    def __init__(self, credentials: tuple[str, str] | None, auth_functions: bool, host_names: Iterable[str]):
        self.credentials = credentials  # (user, password); None: no auth at all
        self.auth_functions = auth_functions
        names = {"localhost", socket.gethostname(), *host_names}
        self.allowed_hosts = {h.lower().rstrip(".") for h in names}

    @web.middleware
    async def host_check(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.host_allowed(request.headers.get("Host", "")):
            return await handler(request)
        return error(
            400, "host_not_allowed", "the Host header names no host this gateway serves (sai up --allow-host NAME adds one)"
        )

    def host_allowed(self, host: str) -> bool:
        """An IP literal, a configured name, or no Host at all (HTTP/1.0: no browser sends that)."""
        if not host:
            return True
        name = host[1 : host.find("]")] if host.startswith("[") else host.rpartition(":")[0] if ":" in host else host
        name = name.lower().rstrip(".")
        try:
            ipaddress.ip_address(name)
            return True  # a browser's origin is then that address: nothing to rebind
        except ValueError:
            return name in self.allowed_hosts

    @web.middleware
    async def auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        guarded = request.path.startswith("/system/") or (
            self.auth_functions and request.path.startswith(("/function/", "/async-function/"))
        )
        if self.credentials is None or not guarded or self.authorized(request.headers.get("Authorization", "")):
            return await handler(request)
        resp = error(401, "unauthorized", "invalid credentials (basic auth; `sai up` wrote them to the state folder)")
        resp.headers["WWW-Authenticate"] = 'Basic realm="Restricted"'
        return resp

    def authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value, validate=True).partition(b":")
        except ValueError:  # binascii.Error, or a header that is not ASCII
            return False
        if self.credentials is None:
            return False
        want_user, want_password = (part.encode() for part in self.credentials)
        # Bytes, never str: compare_digest raises TypeError on non-ASCII str (a 500 per request).
        # Both compared, in constant time, so a timing never tells which part was wrong.
        return bool(sep) & hmac.compare_digest(user, want_user) & hmac.compare_digest(password, want_password)

    def upstream_headers(self, request: web.Request) -> dict[str, str]:
        """The caller's headers as a function gets them (and an async call stores them): not the
        hop-by-hop ones (Proxy-Authorization among them), not Authorization when it carries the
        gateway's own credentials (the portal sends them on every call; with --auth-functions
        every call does), and no Cookie: the gateway sets none, and browsers send it every
        other 127.0.0.1 web app's cookies, as cookies are not kept apart by port (RFC 6265 8.5).
        An Authorization the gateway does not own (a function's own token) passes."""
        headers = forwardable(request.headers)
        for key in [k for k in headers if k.lower() in ("authorization", "cookie")]:
            if key.lower() == "cookie" or (self.credentials is not None and self.authorized(headers[key])):
                del headers[key]
        return headers

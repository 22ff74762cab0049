"""The callback policy's rules, and the delivery-time guard against DNS rebinding: aiohttp is
given only addresses the policy accepts when it connects. (Through the gateway over HTTP:
tests/test_async_calls.py and tests/test_async_gateway.py.)"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from sai.local.callbacks import CallbackPolicy, CallbackRefused, PinnedResolver

OWN = {8080: "gateway", 9000: "S3 server"}


@pytest.mark.parametrize(
    "address, port, refused",
    [
        ("127.0.0.1", 8080, "gateway"),
        ("127.3.4.5", 9000, "S3 server"),
        ("::ffff:127.0.0.1", 9000, "S3 server"),
        ("::", 8080, "gateway"),
        ("169.254.169.254", 80, "metadata"),
        ("fd00:ec2::254", 80, "metadata"),
        ("10.0.0.1", 80, "allow-list"),
        ("127.0.0.1", 9999, None),
        ("::1", 9999, None),
        ("93.184.216.34", 443, None),
    ],
)
def test_rules(address, port, refused):
    reason = CallbackPolicy(lambda: OWN).judge("h", port, ipaddress.ip_address(address))
    assert (reason is None) if refused is None else (refused in reason)


def test_allow_list_entries():
    policy = CallbackPolicy(lambda: OWN, ["10.0.0.0/8", "hooks.internal:8443"])
    assert policy.judge("x", 80, ipaddress.ip_address("10.2.3.4")) is None
    assert policy.judge("hooks.internal", 8443, ipaddress.ip_address("192.168.1.1")) is None
    assert policy.judge("hooks.internal", 8444, ipaddress.ip_address("192.168.1.1"))
    with pytest.raises(ValueError):
        CallbackPolicy(allow=["not an entry"])


def test_the_resolver_refuses_at_connect_time_what_the_name_resolves_to_then():
    """A name accepted at 202 that later resolves to a platform port is refused at delivery:
    here the platform's ports change under the same name (localhost), as a rebinding would."""
    ports = {}
    resolver = PinnedResolver(CallbackPolicy(lambda: ports))

    async def resolve():
        return await resolver.resolve("localhost", 7777)

    assert {r["host"] for r in asyncio.run(resolve())} <= {"127.0.0.1", "::1"}
    ports[7777] = "function image-classify"
    with pytest.raises(OSError, match="function image-classify"):
        asyncio.run(resolve())


def test_credentials_and_schemes_are_refused_before_resolving():
    for url in ("http://u:p@example.com/", "ftp://example.com/", "http:///x"):
        with pytest.raises(CallbackRefused):
            CallbackPolicy.parse(url)

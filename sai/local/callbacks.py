"""Where the gateway may POST async results (X-Callback-Url): an SSRF guard.

The host is resolved (getaddrinfo, so every spelling counts: 0x7f000001, 2130706433, 127.1,
[::ffff:127.0.0.1], names) and each address is judged:
- refused always: the platform's own services (gateway, Triton HTTP/gRPC/metrics, function ports,
  the S3 server) on any address of this machine; link-local, cloud metadata, multicast and
  reserved addresses; URLs with credentials;
- allowed: other ports on loopback (a developer's local receiver), and public addresses;
- private ranges (10/8, 172.16/12, 192.168/16, fc00::/7, 100.64/10 ...): only when an allow-list
  entry (`--callback-allow CIDR|host:port`) matches.
Delivery (`CallbackSender`) checks again and connects only to the addresses it checked
(`PinnedResolver`), so a name that resolves differently later (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import aiohttp
import psutil
from aiohttp.abc import AbstractResolver, ResolveResult

MAX_CALLBACK_URL = 2048

# Instance-metadata endpoints outside 169.254/16: AWS IPv6, Alibaba, Azure's wire server.
METADATA = {ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200", "168.63.129.16")}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class CallbackRefused(ValueError):
    """The reason a callback URL may not be used, as the 400 says it."""


def _plain(ip: Address) -> Address:
    """IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) IPv6 as the IPv4 they reach."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return ip.ipv4_mapped
        if int(ip) >> 32 == 0 and int(ip) > 1:
            return ipaddress.IPv4Address(int(ip))
    return ip


def _own_addresses() -> set[Address]:
    """Every address of this machine's interfaces (a service bound to 0.0.0.0 answers on all)."""
    out: set[Address] = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    out.add(_plain(ipaddress.ip_address(a.address.split("%")[0])))
                except ValueError:
                    pass
    return out


class CallbackPolicy:
    """`protected()` returns {port: service name} of the platform's own listeners (called on each
    check: function ports change when a function restarts). `allow` holds CIDRs and host:port."""

    def __init__(self, protected: Callable[[], dict[int, str]] = dict, allow: Iterable[str] = ()):
        self.protected = protected
        self.allow_nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.allow_hostports: set[tuple[str, int]] = set()
        for entry in allow:
            self.add_allow(entry)
        self._own = _own_addresses()

    def add_allow(self, entry: str) -> None:
        entry = entry.strip()
        try:
            self.allow_nets.append(ipaddress.ip_network(entry, strict=False))
            return
        except ValueError:
            pass
        host, sep, port = entry.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"callback allow-list entry {entry!r} is neither a CIDR nor host:port")
        self.allow_hostports.add((host.strip("[]").lower(), int(port)))

    # ---------------------------------------------------------------- the rules

    def judge(self, host: str, port: int, ip: Address) -> str | None:
        """None when `ip` (what `host` resolved to) may receive a callback on `port`, else why not."""
        ip = _plain(ip)
        local = ip.is_loopback or ip.is_unspecified or ip in self._own
        if local and port in (services := self.protected()):
            return f"X-Callback-Url points at the platform's own {services[port]} (port {port})"
        if ip in METADATA or ip.is_link_local:
            return f"X-Callback-Url resolves to {ip}, a link-local or cloud-metadata address"
        if ip.is_loopback or ip.is_unspecified:
            return None  # a receiver on this machine, on a port that is not ours (::1 is "reserved" too)
        if ip.is_multicast or ip.is_reserved:
            return f"X-Callback-Url resolves to {ip}, a multicast or reserved address"
        if ip.is_global:
            return None
        if (host.lower(), port) in self.allow_hostports or any(ip in net for net in self.allow_nets):
            return None
        return f"X-Callback-Url resolves to {ip}, a private address not in the callback allow-list (--callback-allow)"

    @staticmethod
    def parse(url: str) -> tuple[str, int]:
        """(host, port) of an acceptable-looking URL; CallbackRefused otherwise."""
        if len(url) > MAX_CALLBACK_URL:
            raise CallbackRefused("X-Callback-Url is too long")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise CallbackRefused("X-Callback-Url is not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise CallbackRefused("X-Callback-Url must be an http or https URL")
        if not parts.hostname:
            raise CallbackRefused("X-Callback-Url has no host")
        if parts.username is not None or parts.password is not None:
            raise CallbackRefused("X-Callback-Url must not carry credentials")
        return parts.hostname.rstrip("."), port or (443 if parts.scheme == "https" else 80)

    async def resolve(self, host: str, port: int) -> list[Address]:
        """Every address `host` resolves to, each checked; CallbackRefused at the first refused."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise CallbackRefused(f"X-Callback-Url host {host!r} does not resolve") from None
        addresses = []
        for *_, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            if reason := self.judge(host, port, ip):
                raise CallbackRefused(reason)
            addresses.append(ip)
        if not addresses:
            raise CallbackRefused(f"X-Callback-Url host {host!r} does not resolve")
        return addresses

    async def check(self, url: str) -> tuple[str, int, list[Address]]:
        """(host, port, checked addresses) of `url`; CallbackRefused with the reason otherwise."""
        host, port = self.parse(url)
        return host, port, await self.resolve(host, port)


class PinnedResolver(AbstractResolver):
    """aiohttp resolver that returns only addresses the policy accepts, resolved at connect
    time: the address connected to is the address checked."""

    def __init__(self, policy: CallbackPolicy):
        self.policy = policy

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        try:
            addresses = await self.policy.resolve(host, port)
        except CallbackRefused as exc:
            raise OSError(str(exc)) from None
        return [
            {
                "hostname": host,
                "host": str(ip),
                "port": port,
                "family": socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for ip in addresses
        ]

    async def close(self) -> None:
        pass


def host_key(host: str, port: int) -> str:
    """The per-receiver key: the URL's host and port, as written (lower-cased)."""
    return f"{host.lower().strip('[]')}:{port}"


# Statuses after which a callback is tried again (with back-off).
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


class CallbackSender:
    """POSTs async results to their callbacks: each connection goes to an address the policy
    accepted when it was made (PinnedResolver: no DNS rebinding), no redirects are followed, and
    each receiver gets at most `per_receiver` connections at once."""

    def __init__(self, policy: CallbackPolicy, per_receiver: int, timeout_s: float):
        self.policy, self.per_receiver = policy, per_receiver
        connector = aiohttp.TCPConnector(resolver=PinnedResolver(policy), use_dns_cache=False)
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            headers={"User-Agent": "sai-gateway-async"},
        )
        self._slots: dict[str, asyncio.Semaphore] = {}

    @staticmethod
    def host_key_of(url: str) -> str:
        return host_key(*CallbackPolicy.parse(url))

    async def close(self) -> None:
        await self.session.close()

    async def post(self, url: str, headers: dict, body: bytes) -> tuple[bool, str | None]:
        """One callback attempt -> (worth retrying, error or None). The URL is checked again
        first (the platform's ports may have changed; names may resolve elsewhere now)."""
        try:
            host, port = self.policy.parse(url)
            await self.policy.resolve(host, port)
        except CallbackRefused as exc:
            return False, str(exc)
        slots = self._slots.setdefault(self.host_key_of(url), asyncio.Semaphore(self.per_receiver))
        async with slots:
            try:
                # No redirects: a redirect could lead back into the gateway.
                async with self.session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        return False, None
                    return resp.status in RETRY_STATUSES, f"callback answered {resp.status}"
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                return True, f"callback unreachable: {type(exc).__name__}"

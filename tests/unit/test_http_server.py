"""The gateway's HTTP server answers what aiohttp rejects before any handler (malformed HTTP) with
its JSON error. The swap relies on aiohttp 3.x internals (sai/local/http_server.py), so these
fail loudly when an aiohttp upgrade stops it from applying."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from sai.local import http_server
from sai.state import free_port


def test_the_installed_aiohttp_has_what_the_swap_relies_on():
    http_server.check_aiohttp()


def test_another_handle_error_signature_stops_the_start(monkeypatch):
    def handle_error(self, request, status=500, exc=None, message=None, extra=None):
        raise AssertionError("never called")

    monkeypatch.setattr(web.RequestHandler, "handle_error", handle_error)
    with pytest.raises(RuntimeError, match="sai/local/http_server.py must follow this aiohttp"):
        http_server.check_aiohttp()


async def _raw_exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def test_malformed_http_gets_the_gateway_json_from_a_real_server():
    async def run() -> tuple[bytes, bytes, type]:
        runner = http_server.JsonErrorsRunner(web.Application())
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            bad_line = await _raw_exchange(port, b"GET\x01 / HTTP/1.1\r\nHost: x\r\n\r\n")
            big_header = await _raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
            return bad_line, big_header, type(runner.server())
        finally:
            await runner.cleanup()

    bad_line, big_header, handler_class = asyncio.run(run())
    assert handler_class is http_server._JsonErrorHandler  # the swap applied
    for raw in (bad_line, big_header):
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"400" and b"Content-Type: application/json" in head, raw[:300]
        error = json.loads(body)["error"]
        assert error["code"] == "bad_request" and error["message"].startswith("malformed HTTP request: ")

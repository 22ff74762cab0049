"""The gateway's own thread: an asyncio event loop serving the gateway's aiohttp app (gateway.py)
on the platform's address, so that the supervisor's thread stays free to start, stop and restart
processes. Everything the app does (the gateway, its /system API, async calls) runs on this loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web

from sai.local.http_server import JsonErrorsRunner

log = logging.getLogger(__name__)

T = TypeVar("T")


class GatewayThread:
    def __init__(self, app: web.Application, host: str, port: int, header_timeout_s: float):
        self.app, self.host, self.port, self.header_timeout_s = app, host, port, header_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Serve in a new thread; returns once listening, or raises RuntimeError with the reason."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                # aiohttp arms keepalive_timeout when a connection opens, and closes it if no
                # request has arrived by then: so it is also the header timeout (slowloris).
                runner = JsonErrorsRunner(self.app, access_log=None, keepalive_timeout=self.header_timeout_s)
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, self.host, self.port, backlog=1024)
                loop.run_until_complete(site.start())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="gateway", daemon=True)
        self._thread.start()
        started.wait(timeout)
        if failure:
            raise RuntimeError(f"gateway could not start on port {self.port}: {failure[0]}")
        log.info("gateway listening on http://%s:%d", self.host, self.port)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Run `coro` on the gateway's loop from another thread and wait for its result."""
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the gateway is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the loop; the app's cleanup (async calls drained, sessions closed) runs first."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

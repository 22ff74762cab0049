"""How the connectors reach functions: through the gateway, as OpenFaaS's do, so that the gateway's
metrics, logs, admission limits and auth apply to triggered calls as to any other.

connector-sdk v0.6.7 (types/invoker.go: invoke) POSTs the message to
`<gateway>/function/<name>.<namespace>` with `X-Topic: <topic>` and `X-Connector: connector-sdk`,
and no Content-Type unless the connector sets one (nats-connector 0.3.0 does not); cron-connector
0.7.0 (types/cron_function.go: InvokeFunction) POSTs no body with `X-Topic: cron-function` and
`X-Connector: cron-connector`. Both list functions with GET /system/functions and basic auth
(connector-sdk types/function_list_builder.go, cron-connector main.go).
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass

import aiohttp

from sai.local.deployments import NAMESPACE

log = logging.getLogger(__name__)

PREVIEW_BYTES = 300  # of a function's answer, in the log line of each triggered call


@dataclass
class Outcome:
    status: int  # 0: the gateway could not be reached
    body: bytes
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Worth another try later: no answer, 429 (busy) or a 5xx (down, waking, overloaded)."""
        return self.status == 0 or self.status == 429 or self.status >= 500

    def describe(self) -> str:
        if self.status == 0:
            return f"gateway unreachable ({self.error})"
        text = self.body[:PREVIEW_BYTES].decode("utf-8", "replace").replace("\n", " ")
        more = "..." if len(self.body) > PREVIEW_BYTES else ""
        return f"{self.status} in {self.seconds * 1000:.0f} ms: {text}{more}"


def backoff_s(attempt: int, first_s: float, max_s: float) -> float:
    """Delay before try `attempt + 1`: first_s, 2 first_s, 4 first_s ... capped at max_s."""
    return min(max_s, first_s * 2 ** (attempt - 1))


class Gateway:
    """The gateway as a connector sees it: its function list and its /function route."""

    def __init__(self, url: str, auth: tuple[str, str] | None, timeout_s: float, auth_functions: bool = False):
        self.url = url.rstrip("/")
        self.auth = {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()} if auth else {}
        # Credentials go with function calls only when the gateway asks for them there: the
        # gateway passes headers on, and a function has no business seeing its admin password.
        self.function_auth = self.auth if auth_functions else {}
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=5)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # made inside the connectors' event loop
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def annotations(self) -> dict[str, dict[str, str]]:
        """Function name -> its annotations, from GET /system/functions (raises on failure)."""
        async with self.session.get(f"{self.url}/system/functions", params={"namespace": NAMESPACE}, headers=self.auth) as resp:
            resp.raise_for_status()
            return {f["name"]: f.get("annotations") or {} for f in await resp.json()}

    async def invoke(self, function: str, body: bytes, headers: dict[str, str]) -> Outcome:
        """POST once to the function through the gateway; never raises for a failed call."""
        start = time.perf_counter()
        url = f"{self.url}/function/{function}.{NAMESPACE}"
        try:
            async with self.session.post(
                url, data=body, headers={**headers, **self.function_auth}, skip_auto_headers=("Content-Type",)
            ) as resp:
                return Outcome(resp.status, await resp.read(), time.perf_counter() - start)
        except (TimeoutError, aiohttp.ClientError) as exc:
            return Outcome(0, b"", time.perf_counter() - start, error=str(exc) or type(exc).__name__)

"""Admission control at the gateway: how many calls a function may have in flight, how many may
wait for a slot, and how many request-body bytes the gateway may hold at once.

The in-flight limit is of-watchdog's `max_inflight` (openfaas/of-watchdog, config/config.go reads
the env var; faas-middleware concurrency-limiter/concurrency_limiter.go answers 429 at once past
it). stack.yml sets it in each function's `environment`, so in a cluster the function's own
watchdog enforces the same number; locally there is no watchdog and the gateway does. Unlike
of-watchdog, a few calls may wait (a bounded queue, `max_queued`, for at most `wait_s`) before the
answer is 429 (queue full, at once) or 503 (no slot in time), both with Retry-After: under
overload a client gets a fast answer, never a hang until the upstream timeout.
"""

from __future__ import annotations

import asyncio
import collections

from sai.local.responses import GatewayError


class Busy(GatewayError):
    """No slot: `status` 429 (queue full) or 503 (waited too long), with the reason; retry in 1 s."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(status, code, message, retry_after=1)


class Admission:
    """Slots for one function, shared by its replicas: `per_replica` (of-watchdog's max_inflight,
    a limit per process) times the replicas that answer; 0 means unlimited (of-watchdog's default)."""

    def __init__(self, name: str, per_replica: int = 0, max_queued: int = 0, wait_s: float = 10.0):
        self.name, self.per_replica, self.max_queued, self.wait_s = name, per_replica, max_queued, wait_s
        self.max_inflight = per_replica
        self.inflight = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    def replicas(self, n: int) -> None:
        """The function now has `n` replicas that answer (at least one slot's worth while it wakes):
        the limit follows, and waiting calls take the slots a larger limit frees."""
        self.max_inflight = self.per_replica * max(n, 1)
        while self._waiters and self.inflight < self.max_inflight:
            slot = self._waiters.popleft()
            if not slot.done():
                self.inflight += 1
                slot.set_result(None)

    async def enter(self, queue: bool = True) -> None:
        """Take a slot, or raise Busy. `queue=False` (async workers) waits without the queue's bounds."""
        if not self.max_inflight or self.inflight < self.max_inflight:
            self.inflight += 1
            return
        if queue and len(self._waiters) >= self.max_queued:
            raise Busy(
                429,
                "too_many_requests",
                f"function {self.name!r} has {self.inflight} calls in flight (max_inflight {self.max_inflight}) "
                f"and {len(self._waiters)} waiting",
            )
        slot = asyncio.get_running_loop().create_future()
        self._waiters.append(slot)
        try:
            await (asyncio.wait_for(asyncio.shield(slot), self.wait_s) if queue else slot)
        except TimeoutError:
            if slot.done():  # handed over just as the wait ended: keep it
                return
            slot.cancel()
            raise Busy(503, "function_busy", f"no free slot of function {self.name!r} within {self.wait_s:g}s") from None
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():
                self.leave()  # handed over to a client that went away: pass it on
            slot.cancel()
            raise

    def leave(self) -> None:
        """Give the slot to the next live waiter, or free it."""
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_result(None)  # the slot passes on; inflight stays the same
                return
        self.inflight -= 1


class ByteBudget:
    """Bytes of request bodies the gateway holds in memory at once (async calls are buffered to
    be stored); a reservation that does not fit is refused, not waited for."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n

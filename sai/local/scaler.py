"""Scale to zero, wake on request, scale out: the local platform's autoscaler.

It runs on the gateway's event loop, beside the calls it watches. The gateway tells it when a call
starts and ends (a LoadMeter per function) and asks it for the replica to call (`replica`). Every
tick it samples each function's load, asks `Autoscaler.decide` (autoscale.py) for a count and
applies it:
- up: the new replicas start, and take calls once they listen;
- down: the leaving replicas take no new calls, finish those they have (drain), then stop;
- to zero: the same for the last ones. A call that comes before they have stopped keeps them (the
  step to zero is called off); one that comes after waits for the wake.
A call for a function at zero is held while the platform wakes it (its models loaded within the
memory budget, `min` replicas started and listening), as the OpenFaaS gateway holds calls when it
scales from zero (openfaas/faas gateway/scaling/function_scaler.go) and Knative's activator does;
past the wake timeout it gets 503 with Retry-After, and the wake goes on for the next try. Calls
from /async-function and bucket events come through the same gateway, so they wake it too.
Models that no running function needs are unloaded once idle for the platform's zero-duration.

Process work (starting, stopping, loading, unloading) runs in a worker thread under the platform's
lock, through `ScaleOps` (the platform implements it); the rest runs on the loop, so the decision
to drain a replica and the routing of calls never race.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from sai.local.autoscale import Autoscaler, LoadMeter
from sai.local.function_replicas import RunningFunction
from sai.local.scale_policy import ScalePolicy

log = logging.getLogger(__name__)

TICK_S = 0.25
DRAIN_POLL_S = 0.02


class Unavailable(Exception):
    """No replica within the wait: the gateway answers 503 with Retry-After."""


class ScaleOps(Protocol):
    def policy(self, name: str) -> ScalePolicy: ...

    def models(self, name: str) -> set[str]:
        """The Triton models function `name` calls (its ensembles' steps included)."""

    def loaded_models(self) -> set[str]: ...

    def wake(self, name: str, last_used: dict[str, float], asked_at: float) -> dict[str, float]:
        """Load the function's models (making room within the budget, least recently used first by
        `last_used`), start its `min` replicas, wait until they listen; seconds per phase, "total"
        from `asked_at` (monotonic) until it listens."""

    def resize(self, name: str, replicas: int, fn: RunningFunction, last_used: dict[str, float]) -> None:
        """Run `replicas` processes of `fn` (nothing if `name` is no longer `fn`: redeployed): start
        the missing ones, with the models they call (within the budget, as a wake), and wait for
        them, or stop the last ones."""

    def unload_idle(self, models: set[str]) -> set[str]:
        """Unload those of `models` that no function with replicas still needs; those unloaded."""

    def idle_limit(self, model: str) -> float | None:
        """How long `model` may stay loaded once no running function calls it (None: for good)."""


class Change:
    """A replica count being applied to one function (one at a time per function)."""

    def __init__(self, target: int):
        self.target = target
        self.called_off = False  # a call came while the leaving replicas drained: they stay
        self.committed = False  # the leaving replicas are being stopped: too late to call off
        self.task: asyncio.Task | None = None


class Scaler:
    def __init__(
        self,
        functions: dict,
        ops: ScaleOps,
        wake_timeout_s: float = 30.0,
        on_cold_start: Callable[[str, dict[str, float]], None] = lambda name, phases: None,
        tick_s: float = TICK_S,
    ):
        """`functions`: the fleet's name -> RunningFunction map; `on_cold_start(name, phases)`
        records a wake's phases (the metrics)."""
        self.functions, self.ops = functions, ops
        self.wake_timeout_s, self.tick_s = wake_timeout_s, tick_s
        self.on_cold_start = on_cold_start
        self.meters: dict[str, LoadMeter] = {}
        self.scalers: dict[str, Autoscaler] = {}
        self.changes: dict[str, Change] = {}
        self.wakes: dict[str, asyncio.Future] = {}
        self.unneeded_since: dict[str, float] = {}  # monotonic time each loaded model lost its last user
        self._unloading: asyncio.Task | None = None
        self._task: asyncio.Task | None = None

    # -- what the gateway calls ------------------------------------------------------------------
    def meter(self, name: str) -> LoadMeter:
        if name not in self.meters:
            self.meters[name] = LoadMeter(time.monotonic())
        return self.meters[name]

    def started(self, name: str) -> None:
        self.meter(name).started(time.monotonic())

    def ended(self, name: str) -> None:
        self.meter(name).ended(time.monotonic())

    async def serving(self, name: str) -> bool:
        """Return once the function has a replica that takes calls: at once, or after calling off
        a step to zero, or after a wake, which is True for the call that started it. Raises
        Unavailable when none comes in time."""
        fn = self.functions[name]
        waking = name in self.wakes and not self.wakes[name].done()
        if fn.serving() and not waking:  # a waking replica may listen before its models have loaded
            return False
        change = self.changes.get(name)
        if change is not None and not change.committed and change.target < len(fn.replicas):
            change.called_off = True  # the leaving replicas take calls again
            for r in fn.replicas:
                r.draining = False
            if fn.serving():
                return False
        if change is None and not waking and fn.wanted > 0:
            # replicas wanted, none answers and none is on its way: they died (the supervisor restarts them)
            raise Unavailable(f"function {name!r} is not running")
        woke = await self._wait_for_wake(name)
        if not fn.serving():
            raise Unavailable(f"function {name!r} stopped while waking")
        return woke

    async def _wait_for_wake(self, name: str) -> bool:
        """Wait for the function's wake, starting it if none runs; True for the call that started it."""
        wake, first = self.wakes.get(name), False
        if wake is None or wake.done():
            wake, first = asyncio.ensure_future(self._wake(name)), True
            wake.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: calls may all have gone
            self.wakes[name] = wake
        try:
            await asyncio.wait_for(asyncio.shield(wake), self.wake_timeout_s)
        except TimeoutError:
            raise Unavailable(f"function {name!r} is waking up; retry shortly") from None
        return first

    async def _wake(self, name: str) -> None:
        start = time.monotonic()
        if (change := self.changes.get(name)) is not None and change.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(change.task)  # a step to zero still stopping its replicas
        fn = self.functions.get(name)
        if fn is None:
            raise Unavailable(f"function {name!r} was removed")
        if fn.serving():  # a scale-up (or the called-off change) got there first
            return
        loop = asyncio.get_running_loop()
        try:
            phases = await loop.run_in_executor(None, self.ops.wake, name, self.model_last_used(), start)
        except Exception as exc:  # noqa: BLE001 - the calls waiting get a 503 naming it
            log.error("function %s could not wake: %s", name, exc)
            raise Unavailable(f"function {name!r} could not start: {exc}") from None
        self.scalers[name] = Autoscaler()
        self.on_cold_start(name, phases)
        log.info("function %s woke: %s", name, ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))

    async def set_replicas(self, name: str, replicas: int) -> None:
        """Run `replicas` now (the scale API): what is in flight for the function finishes first;
        going down, the leaving replicas drain before they stop."""
        while (pending := self._pending(name)) is not None:  # a tick may start a change after a wake
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)
        fn = self.functions.get(name)
        if fn is None or (fn.wanted == replicas == len(fn.replicas)):
            return
        log.info("function %s: %d -> %d replicas (the scale API)", name, fn.wanted, replicas)
        task = self._apply(name, replicas)  # no await since the loop saw nothing pending
        await asyncio.shield(task)

    def _pending(self, name: str) -> asyncio.Future | None:
        """The change or wake of `name` still running, if any."""
        if (change := self.changes.get(name)) is not None and change.task is not None:
            return change.task
        if (wake := self.wakes.get(name)) is not None and not wake.done():
            return wake
        return None

    def model_last_used(self) -> dict[str, float]:
        """Model -> the last call of any function that calls it (for the memory budget's LRU)."""
        out: dict[str, float] = {}
        for name, meter in self.meters.items():
            if name in self.functions:
                for model in self.ops.models(name):
                    out[model] = max(out.get(model, 0.0), meter.last_activity)
        return out

    # -- the loop --------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                self.tick(time.monotonic())
            except Exception:  # noqa: BLE001 - one bad tick must not end scaling
                log.exception("autoscaler tick failed")
            await asyncio.sleep(self.tick_s)

    def tick(self, now: float) -> None:
        for name in list(self.functions):
            fn = self.functions[name]
            load = self.meter(name).sample(now)
            if name in self.changes or (name in self.wakes and not self.wakes[name].done()):
                continue
            try:
                policy = self.ops.policy(name)
            except ValueError as exc:  # its labels changed under it (a reload): leave it as it is
                log.warning("function %s: %s", name, exc)
                continue
            wanted, why = self.scalers.setdefault(name, Autoscaler()).decide(policy, fn.wanted, load, now)
            if wanted != fn.wanted:
                log.info("function %s: %d -> %d replicas (%s)", name, fn.wanted, wanted, why)
                self._apply(name, wanted)
        self._unload_idle_models(now)

    def _apply(self, name: str, target: int) -> asyncio.Task:
        change = self.changes[name] = Change(target)
        change.task = asyncio.get_running_loop().create_task(self._change(name, change))
        return change.task

    async def _change(self, name: str, change: Change) -> None:
        fn, loop = self.functions[name], asyncio.get_running_loop()
        try:
            leaving = fn.replicas[change.target :]
            for r in leaving:
                r.draining = True  # from now on pick() skips them
            while any(r.inflight for r in leaving) and not change.called_off:
                await asyncio.sleep(DRAIN_POLL_S)
            if change.called_off:
                log.info("function %s stays at %d replicas: calls came while it drained", name, len(fn.replicas))
                return
            change.committed = True
            await loop.run_in_executor(None, self.ops.resize, name, change.target, fn, self.model_last_used())
        except Exception:  # noqa: BLE001 - logged; the next tick tries again
            log.exception("function %s: scaling to %d failed", name, change.target)
        finally:
            if self.changes.get(name) is change:
                del self.changes[name]

    def _unload_idle_models(self, now: float) -> None:
        needed = {m for n, fn in self.functions.items() if fn.wanted > 0 or n in self.changes for m in self.ops.models(n)}
        waking = {m for n, w in self.wakes.items() if not w.done() for m in self.ops.models(n)}
        idle = self.ops.loaded_models() - needed - waking
        for model in set(self.unneeded_since) - idle:
            del self.unneeded_since[model]
        due = set()
        for model in idle:
            limit = self.ops.idle_limit(model)
            if limit is not None and now - self.unneeded_since.setdefault(model, now) >= limit:
                due.add(model)
        if due and (self._unloading is None or self._unloading.done()):
            self._unloading = asyncio.get_running_loop().create_task(self._unload(due))

    async def _unload(self, models: set[str]) -> None:
        try:
            done = await asyncio.get_running_loop().run_in_executor(None, self.ops.unload_idle, models)
        except Exception:  # noqa: BLE001 - logged; the next tick tries again
            log.exception("unloading idle models %s failed", sorted(models))
            return
        for model in done:
            self.unneeded_since.pop(model, None)
        if done:
            log.info("models unloaded, no running function needs them: %s", ", ".join(sorted(done)))

    # -- what status and metrics show ------------------------------------------------------------
    def idle_s(self, name: str) -> float | None:
        """Seconds since the function's last call ended, while it is at zero; else None."""
        fn = self.functions.get(name)
        if fn is None or fn.wanted:
            return None
        return self.meter(name).idle_s(time.monotonic())

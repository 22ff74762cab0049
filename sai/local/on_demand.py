"""What the autoscaler (scaler.py) asks of the platform, done by the owners: the function fleet
starts and stops replicas, the Triton supervisor loads and unloads models, within the memory
budget (model_memory.py). Each call runs in a worker thread of the gateway's loop and holds the
platform's lock, as every change does (platform.py).

A wake starts the function's processes first and loads its models while they start (they need
Triton only per request), then waits until they listen: its cold start is the longer of the two,
not their sum.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from sai.local.fleet import FunctionFleet
from sai.local.function_replicas import RunningFunction
from sai.local.model_deps import ensembles_using, needed_models
from sai.local.model_memory import ModelBudget, stub_memory_mb
from sai.local.platform_settings import Settings
from sai.local.processes import wait_until
from sai.local.scale_policy import ScalePolicy
from sai.local.triton_supervisor import TritonSupervisor

log = logging.getLogger(__name__)

UNLOAD_WAIT_S = 15.0  # Triton gives a model's stubs this long to exit (Python backend, stub timeout)


class OnDemand:
    def __init__(
        self,
        settings: Settings,
        lock: threading.Lock,
        fleet: FunctionFleet,
        triton: TritonSupervisor,
        changed: Callable[[], None],
    ):
        """`changed()` records a change (the platform's state file), under the lock."""
        self.settings, self.lock, self.fleet, self.triton, self.changed = settings, lock, fleet, triton, changed
        self.budget = ModelBudget(settings.model_repository, settings.models_memory_mb)
        self._models: dict[str, tuple[object, frozenset[str]]] = {}  # name -> (its spec, the models it calls)

    # -- reads (no lock: single lookups) -----------------------------------------------------------
    def policy(self, name: str) -> ScalePolicy:
        return self.fleet.policy(self.fleet.functions[name].spec)

    def models(self, name: str) -> set[str]:
        """The models `name` calls, ensemble steps included; every model of the repository when it
        names none (as `sai up --only` reads it, model_deps.py)."""
        fn = self.fleet.functions.get(name)
        if fn is None:
            return set()
        cached = self._models.get(name)
        if cached is None or cached[0] is not fn.spec:
            needed = needed_models([fn.spec], self.settings.model_repository)
            every = set(self.triton.loaded) | self.triton.left_out
            cached = self._models[name] = (fn.spec, frozenset(every if needed is None else needed))
        return set(cached[1])

    def loaded_models(self) -> set[str]:
        return set(self.triton.loaded)

    def idle_limit(self, model: str) -> float | None:
        """How long `model` may stay loaded with no running function that calls it: the longest
        zero-duration of the functions that call it, the platform's for a model none calls (None:
        for good)."""
        policies = [self.policy(n) for n in list(self.fleet.functions) if model in self.models(n)]
        if not policies:
            return self.settings.zero_duration_s
        if not all(p.zero for p in policies):
            return None
        return max(p.zero_duration_s for p in policies)

    def pinned(self) -> set[str]:
        """Models a function with replicas calls: never unloaded to make room."""
        return {m for n, fn in list(self.fleet.functions.items()) if fn.wanted > 0 for m in self.models(n)}

    # -- changes (under the lock) ------------------------------------------------------------------
    def wake(self, name: str, last_used: dict[str, float], asked_at: float) -> dict[str, float]:
        """Start `name`'s `min` replicas and load its models meanwhile; seconds per phase: waiting
        (for the lock), models (loading them), process and imports (the replica's own report: its
        start until it could import the handler, then the handler's imports; they overlap the
        models'), total (from `asked_at` until a replica listens)."""
        with self.lock:
            locked = time.monotonic()
            fn = self.fleet.functions.get(name)
            if fn is None:
                raise RuntimeError("it was removed")
            fn.wanted = max(fn.wanted, self.policy(name).min)
            fn.start()  # processes spawned; they import while the models load
            if failed := self._load(self.models(name), last_used):
                fn.scale(0)  # no replica without its models: the next call tries the wake again
                self.changed()
                raise RuntimeError(f"its models did not load: {', '.join(sorted(failed))}")
            loaded = time.monotonic()
            fn.wait_ready()
            ready = time.monotonic()
            self.changed()
        report = fn.replicas[0].startup_report() if fn.replicas else {}
        return {
            "waiting": locked - asked_at,
            "models": loaded - locked,
            "process": report.get("process_s", 0.0),
            "imports": report.get("imports_s", 0.0),
            "total": ready - asked_at,
        }

    def _load(self, models: set[str], last_used: dict[str, float]) -> dict[str, str]:
        """Load `models`, first unloading the least recently used others past the budget; those
        that failed, with Triton's reason."""
        loaded = set(self.triton.loaded)
        if not models - loaded:
            return {}
        victims = set(self.budget.room_for(models, loaded, self.pinned(), last_used))
        if victims:
            victims |= ensembles_using(self.settings.model_repository, victims, loaded - models)
            log.info("memory budget: unloading %s to load %s", ", ".join(sorted(victims)), ", ".join(sorted(models - loaded)))
            self._unload(victims, wait=True)
        if failed := self.triton.ensure_loaded(models):
            log.error("models failed to load: %s", json.dumps(failed))
        server = self.triton.server
        total = self.budget.measure(server.process.pid if server and server.process else None, set(self.triton.loaded))
        if self.budget.limit_mb is not None and total > self.budget.limit_mb:
            log.warning("models take %.0f MB, over the budget of %.0f MB: the others are in use", total, self.budget.limit_mb)
        return failed

    def _unload(self, models: set[str], wait: bool = False) -> set[str]:
        """Unload `models`; `wait`: until their stubs have exited (Triton answers while it still
        unloads, state UNLOADING, and to make room the memory must be free, not on its way)."""
        before = set(self.triton.loaded)
        if failed := self.triton.unload(models):
            log.error("models failed to unload: %s", json.dumps(failed))
        done = before - set(self.triton.loaded)
        server = self.triton.server
        if wait and done and server is not None and server.process is not None:
            pid, repo = server.process.pid, self.settings.model_repository
            if not wait_until(lambda: not done & set(stub_memory_mb(pid, repo)), UNLOAD_WAIT_S, interval=0.02):
                log.warning("the stubs of %s still run %.0f s after their unload", ", ".join(sorted(done)), UNLOAD_WAIT_S)
        return done

    def resize(self, name: str, replicas: int, fn: RunningFunction, last_used: dict[str, float]) -> None:
        """Run `replicas` processes of `fn`: start the missing ones, with the models they call (the
        scale API may start a function at zero whose models were unloaded), and wait until they
        listen, or stop the last ones (the scaler drained them). Nothing if `name` was redeployed or
        removed since the scaler chose `fn`: its drain was of the replicas that are gone."""
        with self.lock:
            if self.fleet.functions.get(name) is not fn:
                return
            if replicas > 0:
                self._load(self.models(name), last_used)  # failures logged; its calls get Triton's error
            fn.scale(replicas)
            self.changed()
        log.info("function %s now runs %d replica(s)", name, replicas)

    def unload_idle(self, models: set[str]) -> set[str]:
        """Unload those of `models` that no function with replicas calls now; those unloaded."""
        with self.lock:
            idle = models - self.pinned()
            idle |= ensembles_using(self.settings.model_repository, idle, set(self.triton.loaded) - self.pinned())
            done = self._unload(idle) if idle else set()
            if done:
                self.changed()
        return done

    # -- what the state file shows (under the lock) -------------------------------------------------
    def state(self) -> dict:
        """The loaded models with their memory (measured now), and the budget."""
        server, loaded = self.triton.server, set(self.triton.loaded)
        total = self.budget.measure(server.process.pid if server and server.process else None, loaded)
        return {
            "loaded": {m: round(self.budget.measured.get(m, 0.0), 1) for m in sorted(loaded)},
            "memory_mb": round(total, 1),
            "budget_mb": self.budget.limit_mb,
        }

"""The scaler's wake holds every call until the wake is done (sai/local/scaler.py), not only
until a replica listens: a waking replica can listen before its models have loaded, and a call
forwarded then would fail at Triton. The race is timing-bound in a real platform (CI met it once,
tests/test_scaling.py), so here the wake's process work (ScaleOps, the scaler's seam for it) is a
stand-in that keeps the models loading until the test lets them finish."""

from __future__ import annotations

import asyncio
import threading

from sai.local.scale_policy import scale_policy
from sai.local.scaler import Scaler


class Function:
    """What the scaler reads of a RunningFunction: its replicas and whether one takes calls."""

    def __init__(self):
        self.wanted, self.replicas, self.listening = 0, [], False

    def serving(self) -> list[str]:
        return self.replicas if self.listening else []


class ModelsLoadAfterTheReplicaListens:
    def __init__(self, fn: Function):
        self.fn, self.listens, self.models_loaded = fn, threading.Event(), threading.Event()

    def policy(self, name):
        return scale_policy({"com.openfaas.scale.zero": "true"})

    def models(self, name):
        return {"image_classifier"}

    def loaded_models(self):
        return set()

    def wake(self, name, last_used, asked_at):
        self.fn.wanted, self.fn.replicas, self.fn.listening = 1, ["replica-0"], True
        self.listens.set()
        assert self.models_loaded.wait(10)
        return {"total": 0.1}


def test_a_call_during_a_wake_waits_for_the_models_not_only_for_the_replica():
    fn = Function()
    ops = ModelsLoadAfterTheReplicaListens(fn)
    wakes = []
    scaler = Scaler({"f": fn}, ops, wake_timeout_s=10, on_cold_start=lambda name, phases: wakes.append(name))

    async def scenario():
        first = asyncio.create_task(scaler.serving("f"))
        assert await asyncio.to_thread(ops.listens.wait, 10)
        second = asyncio.create_task(scaler.serving("f"))
        await asyncio.sleep(0.2)
        assert fn.serving() and not second.done()  # the replica listens; the call is still held
        ops.models_loaded.set()
        return await first, await second

    assert asyncio.run(scenario()) == (True, False)  # the first call woke it; one wake
    assert wakes == ["f"]

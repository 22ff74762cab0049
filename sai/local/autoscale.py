"""The autoscaler's arithmetic, apart from any process or clock so that it can be tested alone.

`LoadMeter` is fed by the gateway (a call starts, a call ends) and says, over a recent window, the
mean number of calls in flight (OpenFaaS's `capacity` load) and the calls completed per second
(`rps`), and how long the function has been idle. `Autoscaler.decide` turns that into a replica
count with OpenFaaS Pro's rule (sai/local/scale_policy.py): at once upwards; downwards no lower
than the highest recommendation of the last `down.window` (OpenFaaS's stable window; Knative's
scale-down-delay is the same rule, pkg/autoscaler/scaling/autoscaler.go at knative-v1.23.0); to
zero once idle for `zero-duration`, when the function may. A function at zero stays there: only a
request wakes it (sai/local/scaler.py), as the OpenFaaS gateway's scale-from-zero does.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from sai.local.scale_policy import ScalePolicy

WINDOW_S = 5.0  # the load is averaged over this much recent time


@dataclass(frozen=True)
class Load:
    inflight: float  # mean calls in flight over the window
    rps: float  # calls completed per second over the window
    idle_s: float  # since the last call ended (0 while one is in flight or waits)

    def of(self, policy: ScalePolicy) -> float:
        return self.inflight if policy.type == "capacity" else self.rps


class LoadMeter:
    """One function's calls at the gateway, those waiting for a slot or a wake included. Times are
    the caller's monotonic seconds, passed in, so tests drive it without sleeping."""

    def __init__(self, now: float, window_s: float = WINDOW_S):
        self.window_s = window_s
        self.inflight = 0
        self.completed = 0
        self._area = 0.0  # integral of `inflight` over time
        self._changed = self.last_activity = now  # monotonic time of the last call's start or end
        self._marks: collections.deque[tuple[float, float, int]] = collections.deque([(now, 0.0, 0)])

    def _advance(self, now: float) -> None:
        self._area += self.inflight * (now - self._changed)
        self._changed = now

    def started(self, now: float) -> None:
        self._advance(now)
        self.inflight += 1
        self.last_activity = now

    def ended(self, now: float) -> None:
        self._advance(now)
        self.inflight -= 1
        self.completed += 1
        self.last_activity = now

    def idle_s(self, now: float) -> float:
        return 0.0 if self.inflight else now - self.last_activity

    def sample(self, now: float) -> Load:
        """The load over (about) the last window; call it every tick."""
        self._advance(now)
        self._marks.append((now, self._area, self.completed))
        while len(self._marks) > 2 and now - self._marks[1][0] >= self.window_s:
            self._marks.popleft()
        then, area, completed = self._marks[0]
        span = now - then
        if span <= 0:
            return Load(float(self.inflight), 0.0, self.idle_s(now))
        return Load((self._area - area) / span, (self.completed - completed) / span, self.idle_s(now))


class Autoscaler:
    """One function's decisions; it remembers only the down window's recommendations."""

    def __init__(self) -> None:
        self._recent: collections.deque[tuple[float, int]] = collections.deque()

    def decide(self, policy: ScalePolicy, replicas: int, load: Load, now: float) -> tuple[int, str]:
        """(replicas wanted, why) for a function running `replicas` now."""
        if replicas == 0:
            return 0, "at zero: a request wakes it"
        if policy.zero and load.idle_s >= policy.zero_duration_s:
            self._recent.clear()
            return 0, f"idle for {load.idle_s:.1f}s (zero-duration {policy.zero_duration_s:g}s)"
        value = load.of(policy)
        wanted = policy.desired(value)
        self._recent.append((now, wanted))
        while self._recent and now - self._recent[0][0] > policy.down_window_s:
            self._recent.popleft()
        why = f"{policy.type} {value:.2f} for target {policy.target:g} x {policy.target_proportion:g}"
        if wanted >= replicas:
            return wanted, why
        held = max([wanted] + [r for _, r in self._recent])
        return held, why + (f"; held at {held} by the down window" if held > wanted else "")

"""OpenFaaS's scaling labels (`com.openfaas.scale.*`), read from stack.yml and the deploy API.

Names, meanings and defaults are OpenFaaS Pro's autoscaler's (openfaas/docs
docs/architecture/autoscaling.md and docs/openfaas-pro/scale-to-zero.md at eac50c7, down.window
since 9d5fd44; the Pro source is not public):

  label                 meaning                                                  OpenFaaS default
  min                   lowest replicas while running; what a wake starts        1
  max                   highest replicas under load                              20 (CE: 5)
  zero                  may scale to zero when idle                              false
  zero-duration         idle time (a Go duration) before scaling to zero         15m
  target                load per replica to aim for                              50
  type                  rps (calls/s per replica), capacity (in-flight calls     rps
                        per replica), cpu (not here: see below)
  target-proportion     scale when load reaches this share of the target         0.90
  down.window           scale down no lower than the highest recommendation      off
                        of this window (a Go duration, at most 5m)

  desired = ceil(ready replicas * mean load per replica / (target * target-proportion))
          = ceil(total load / (target * target-proportion)), kept within min..max.

The local platform's differences, each said where it applies: max is capped at 5 (one machine;
OpenFaaS CE's cap, faas-netes 0.18.17 pkg/handlers/replica_reader.go MaxReplicas); where a function
sets no `zero` label, `sai up --zero-duration` decides (stack.yml cannot carry the label: CE refuses
it, see docs/scaling.md); `type: cpu` is refused, as the chart's Knative mode must (Knative's KPA
scales on concurrency or rps only). A bad value is an error that names the label, never ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

PREFIX = "com.openfaas.scale."
MIN, MAX, ZERO, ZERO_DURATION = (PREFIX + k for k in ("min", "max", "zero", "zero-duration"))
TARGET, TYPE, PROPORTION, DOWN_WINDOW = (PREFIX + k for k in ("target", "type", "target-proportion", "down.window"))
FACTOR = PREFIX + "factor"  # CE's AlertManager step (system_api.py's /system/alert), no autoscaler meaning

MAX_REPLICAS = 5  # this platform's cap, OpenFaaS CE's
TYPES = ("rps", "capacity")
DOWN_WINDOW_MAX_S = 300.0  # OpenFaaS: "up to a maximum of 5m"

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class LabelError(ValueError):
    """A scaling label whose value does not parse or is out of range; the message names it."""


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (time.ParseDuration: "15m", "1h30m", "2.5s", "500ms", "0");
    ValueError for anything else, negative durations included."""
    s = text.strip()
    if s == "0":
        return 0.0
    if not s:
        raise ValueError("an empty duration")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _GO_PART.match(s, pos)
        if m is None:
            raise ValueError(f"{text!r} is not a duration such as 15m, 1h30m or 10s")
        total += float(m[1]) * _GO_UNITS[m[2]]
        pos = m.end()
    return total


def format_duration(seconds: float) -> str:
    """A Go duration for `seconds` ("15m0s" style kept short: "15m", "90s", "1h")."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class ScalePolicy:
    min: int = 1
    max: int = MAX_REPLICAS
    zero: bool = False
    zero_duration_s: float = 900.0
    target: float = 50.0
    type: str = "rps"
    target_proportion: float = 0.9
    down_window_s: float = 0.0

    @property
    def static(self) -> bool:
        """min == max: OpenFaaS's autoscaler leaves the function alone (scale to zero aside)."""
        return self.min == self.max

    def desired(self, load: float) -> int:
        """Replicas for a total `load` (calls/s or calls in flight, by type), within min..max."""
        wanted = math.ceil(load / (self.target * self.target_proportion) - 1e-9)
        return min(max(wanted, self.min), self.max)


@dataclass(frozen=True)
class Defaults:
    """What a function that sets no label gets on this platform (`sai up`'s settings)."""

    zero: bool = False  # OpenFaaS's default; `sai up --zero-duration` turns it on
    zero_duration_s: float = 900.0
    down_window_s: float = 0.0


def _number(labels: Mapping[str, str], key: str, cast: Callable[[str], T], noun: str) -> tuple[T | None, str | None]:
    """(value, the label as written) or (None, None) when the label is absent."""
    raw = labels.get(key)
    if raw is None:
        return None, None
    try:
        return cast(str(raw).strip()), raw
    except ValueError:
        raise LabelError(f"{key}={raw!r} is not {noun}") from None


def _int(labels: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    value, raw = _number(labels, key, int, "a whole number")
    if value is None:
        return default
    if value < low:
        raise LabelError(f"{key}={raw!r} must be at least {low}")
    return min(value, high)


def _float(labels: Mapping[str, str], key: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    value, raw = _number(labels, key, float, "a number")
    if value is None:
        return default
    if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
        raise LabelError(f"{key}={raw!r} must be {'over' if low_open else 'at least'} {low:g} and at most {high:g}")
    return value


def _duration(labels: Mapping[str, str], key: str, default: float, low_open: bool, high: float = math.inf) -> float:
    raw = labels.get(key)
    if raw is None:
        return default
    try:
        value = parse_duration(str(raw))
    except ValueError as exc:
        raise LabelError(f"{key}: {exc}") from None
    if (low_open and value <= 0) or value > high:
        bound = f"at most {format_duration(high)}" if value > high else "longer than 0s"
        raise LabelError(f"{key}={raw!r} must be {bound}")
    return value


def _bool(labels: Mapping[str, str], key: str, default: bool) -> bool:
    raw = labels.get(key)
    if raw is None:
        return default
    value = str(raw).strip().lower()
    if value not in ("true", "false"):
        raise LabelError(f"{key}={raw!r} must be true or false")
    return value == "true"


def scale_policy(labels: Mapping[str, str], defaults: Defaults = Defaults()) -> ScalePolicy:
    """The policy a function's labels ask for; LabelError names the first bad label."""
    low = _int(labels, MIN, 1, 1, MAX_REPLICAS)
    high = _int(labels, MAX, MAX_REPLICAS, 1, MAX_REPLICAS)
    if high < low:
        raise LabelError(f"{MAX}={labels.get(MAX)!r} is below {MIN}={labels.get(MIN)!r}")
    kind = str(labels.get(TYPE, "rps")).strip()
    if kind not in TYPES:
        raise LabelError(f"{TYPE}={kind!r} is not supported here: use rps or capacity (cpu needs Kubernetes' HPA)")
    return ScalePolicy(
        min=low,
        max=high,
        zero=_bool(labels, ZERO, defaults.zero),
        zero_duration_s=_duration(labels, ZERO_DURATION, defaults.zero_duration_s, low_open=True),
        target=_float(labels, TARGET, 50.0, 0.01, math.inf),
        type=kind,
        target_proportion=_float(labels, PROPORTION, 0.9, 0.0, 1.0, low_open=True),
        down_window_s=_duration(labels, DOWN_WINDOW, defaults.down_window_s, low_open=False, high=DOWN_WINDOW_MAX_S),
    )

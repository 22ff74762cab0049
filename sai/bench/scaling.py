"""`sai bench scaling`: image-classify scaling out under load, back in, to zero, and no call lost.

A platform with image-classify alone is started for the run. Its labels are set through the deploy
API (PUT /system/functions, as `faas-cli deploy --label` sends them):
1. baseline: `--clients` closed-loop clients for `--seconds` with max 1 replica (min = max: static);
2. the same load with max 2, `capacity` target 4 in-flight calls per replica: the time until the
   second replica answers, and the throughput once it does, against the baseline;
3. the load stops: the time back to 1 replica (after the down window) and then to 0 (zero-duration 8 s);
4. a trickle of `--trickle` single calls at random gaps around a 1 s zero-duration, so calls land
   while replicas drain and stop: every one must succeed (target: zero failed); the wakes from zero
   it caused are counted, which shows that it did cross steps to zero.
"""

from __future__ import annotations

import json
import random
import threading
import time

from sai.bench.harness import Client, GatewayAdmin, fmt, print_table, started_platform
from sai.bench.image import photos

NAME = "image-classify"
P = "com.openfaas.scale."
SCALE_OUT = {P + "min": "1", P + "max": "2", P + "type": "capacity", P + "target": "4", P + "target-proportion": "1.0"}


class Load:
    """`clients` threads posting photos in a closed loop until stopped; completion times kept."""

    def __init__(self, url: str, clients: int):
        self.url, self.images, self.stop_flag = url, photos(), threading.Event()
        self.done: list[float] = []
        self.failed: list[str] = []
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        client, i = Client(self.url), 0
        while not self.stop_flag.is_set():
            status, body = client.post(f"/function/{NAME}", self.images[i % len(self.images)], "image/jpeg")
            i += 1
            if status == 200:
                self.done.append(time.monotonic())
            else:
                self.failed.append(f"{status} {body[:120]!r}")

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(120)

    def rate(self, since: float, until: float) -> float:
        return sum(since <= t < until for t in self.done) / max(until - since, 1e-9)


class Gateway(GatewayAdmin):
    """The gateway's view of image-classify."""

    def label(self, labels: dict[str, str]) -> None:
        """Redeploy image-classify with these labels (and its own image and environment)."""
        fn = self.function(NAME)
        self.api("PUT", "/system/functions", {"service": NAME, "image": fn["image"], "envVars": fn["envVars"], "labels": labels})

    def cold_starts(self) -> int:
        """Wakes of image-classify from zero so far (the gateway's sai_cold_starts_total)."""
        return int(sum(s.value for s in self.samples("sai_cold_starts", NAME) if s.name.endswith("_total")))

    def when(self, test, timeout: float) -> float | None:
        """Seconds until test(function) holds, polling every 50 ms; None past the timeout."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if test(self.function(NAME)):
                return time.monotonic() - start
            time.sleep(0.05)
        return None


def run(args) -> int:
    out: dict = {}
    with started_platform([NAME], ["--zero-duration", "3s"]) as (url, state, _ready):
        g = Gateway(url, state)
        g.label({P + "min": "1", P + "max": "1"})
        with Load(url, args.clients) as load:
            start = time.monotonic()
            time.sleep(args.seconds)
        one = load.rate(start + 2, start + args.seconds)
        print(f"1 replica (static): {one:.1f} img/s", flush=True)

        # zero-duration past the 5 s the load is averaged over: back to 1 replica first, then to 0
        g.label({**SCALE_OUT, P + "zero": "true", P + "zero-duration": "8s", P + "down.window": "3s"})
        with Load(url, args.clients) as load:
            start = time.monotonic()
            to_two = g.when(lambda f: f["availableReplicas"] == 2, args.seconds)
            two_at = time.monotonic()
            time.sleep(max(args.seconds - (two_at - start), 2))
            end = time.monotonic()
        two = load.rate(two_at + 1, end) if to_two is not None else 0.0
        print(f"scaled out to 2 after {to_two:.2f} s: {two:.1f} img/s" if to_two is not None else "never 2 replicas", flush=True)
        stopped = time.monotonic()
        to_one = g.when(lambda f: f["replicas"] == 1, 60)
        to_zero = g.when(lambda f: f["replicas"] == 0, 60)
        failed_load = len(load.failed)

        g.label({**SCALE_OUT, P + "zero": "true", P + "zero-duration": "1s"})
        failures, client, images = [], Client(url), photos()
        wakes_before = g.cold_starts()
        for i in range(args.trickle):
            time.sleep(random.uniform(0.3, 2.5))
            status, body = client.post(f"/function/{NAME}", images[i % len(images)], "image/jpeg")
            if status != 200:
                failures.append(f"{status} {body[:200]!r}")
        wakes = g.cold_starts() - wakes_before  # proof that the trickle crossed steps to zero
        back = (
            f"{to_one:.1f} s to 1, then {to_zero:.1f} s more to 0" if to_one is not None and to_zero is not None else "not seen"
        )
        out = {
            "one_replica_per_s": one,
            "two_replicas_per_s": two,
            "to_two_replicas_s": to_two,
            "after_load_to_one_s": to_one,
            "then_to_zero_s": to_zero,
            "failed_under_load": failed_load,
            "trickle_calls": args.trickle,
            "trickle_failed": failures,
            "trickle_wakes": wakes,
            "waited_s": time.monotonic() - stopped,
        }
    rows = [
        [f"{args.clients} clients, max 1 replica", fmt(one), "-", "baseline"],
        [
            f"{args.clients} clients, max 2 (capacity 4)",
            fmt(two),
            fmt(two / one if one else 0, 2) + "x",
            f"2 replicas after {fmt(to_two, 2)} s" if to_two is not None else "never 2 replicas",
        ],
        ["load stops", "-", "-", back],
        [
            f"{args.trickle} calls at 0.3-2.5 s gaps, zero-duration 1s",
            "-",
            "-",
            f"{len(failures)} failed (target 0); {wakes} woke it from zero",
        ],
    ]
    print()
    print_table(["phase", "img/s", "vs 1 replica", "what happened"], rows)
    for f in failures:
        print("failed:", f)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0 if not failures and not failed_load else 1

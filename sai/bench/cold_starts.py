"""`sai bench coldstart`: how long a function takes to answer from zero.

A platform is started for the run with a short zero-duration, so functions (and then their
models) go to zero between calls. For each function it measures, `--repeats` times each:
- model unloaded: the function at zero and its Triton models unloaded (the full cold start);
- model loaded: the function at zero, its models still loaded (within the model idle time);
the time from sending the request to its first byte (the answer's status line) and to the whole
answer, and where the wake went, phase by phase, from the gateway's own cold-start metric
(sai_cold_start_seconds{phase}: waiting, models, process, imports, total until a replica
listens, first_request). The baseline, measured in the same run: the same request to the warm
function.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
import urllib.parse
import urllib.request

from sai import paths
from sai.bench.harness import GatewayAdmin, fmt, print_table, started_platform
from sai.bench.image import photos
from sai.local.model_deps import needed_models
from sai.local.processes import wait_until
from sai.local.stack import Function
from sai.state import read_state

FUNCTIONS = "image-classify,text-sentiment,text-embed,text-keywords,text-entities"
TARGETS = {("image-classify", "unloaded"): 2.0, ("image-classify", "loaded"): 1.0}  # p50 seconds to the answer
ZERO_DURATION = "2s"  # the platform's, for this run
PHASES = ("waiting", "models", "process", "imports", "total", "first_request")
TEXT = {"text": "The battery easily lasts two days, and the screen is bright enough to read in full sun."}


def sample(name: str) -> tuple[bytes, str]:
    if name == "image-classify":
        return photos()[0], "image/jpeg"
    return json.dumps(TEXT).encode(), "application/json"


class Target(GatewayAdmin):
    """The platform under test: its gateway, its Triton and its credentials."""

    def __init__(self, url: str, state):
        super().__init__(url, state)
        self.triton = read_state(state)["triton"]["url"]

    def replicas(self, name: str) -> int:
        return self.function(name)["replicas"]

    def models(self, name: str) -> list[str]:
        env = self.function(name)["envVars"]
        return needed_models([Function(name=name, handler=paths.repo_root(), environment=env)], paths.model_repository()) or []

    def model_loaded(self, model: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.triton}/v2/models/{model}/ready", timeout=5) as resp:
                return resp.status == 200
        except OSError:
            return False

    def phases(self, name: str) -> dict[str, float]:
        """Seconds summed per cold-start phase of `name` so far (the gateway's metric)."""
        out = dict.fromkeys(PHASES, 0.0)
        for s in self.samples("sai_cold_start_seconds", name):
            if s.name.endswith("_sum"):
                out[s.labels["phase"]] = s.value
        return out

    def call(self, name: str) -> tuple[float, float]:
        """(seconds to the first byte, seconds to the whole answer) of one request."""
        body, content_type = sample(name)
        parts = urllib.parse.urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
        start = time.perf_counter()
        conn.request("POST", f"/function/{name}", body=body, headers={"Content-Type": content_type, **self.auth})
        resp = conn.getresponse()
        first = time.perf_counter() - start
        data = resp.read()
        total = time.perf_counter() - start
        conn.close()
        if resp.status != 200:
            raise RuntimeError(f"{name} answered {resp.status}: {data[:200]!r}")
        return first, total


def cold(t: Target, name: str, models: list[str], loaded: bool) -> dict:
    """One cold call: wait for the function at zero and its models in the wanted state, then call."""
    for _ in range(5):
        at_zero = wait_until(lambda: t.replicas(name) == 0, 120, interval=0.05)
        if not at_zero:
            raise RuntimeError(f"{name} did not scale to zero within 120 s")
        if not loaded and not wait_until(lambda: not any(map(t.model_loaded, models)), 120, interval=0.1):
            raise RuntimeError(f"{name}'s models {models} stayed loaded for 120 s")
        if loaded and not all(map(t.model_loaded, models)):
            t.call(name)  # they went in the meantime: wake it and catch the next step to zero sooner
            continue
        before = t.phases(name)
        first, total = t.call(name)
        after = t.phases(name)
        return {"first_byte_s": first, "total_s": total, "phases": {p: after[p] - before[p] for p in PHASES}}
    raise RuntimeError(f"could not catch {name} at zero with its models loaded")


def run(args) -> int:
    names = [n for n in args.functions.split(",") if n]
    extra = ["--zero-duration", ZERO_DURATION]
    rows, out = [], []
    with started_platform(names, extra) as (url, state, _ready):
        t = Target(url, state)
        for name in names:
            models = t.models(name)
            t.call(name)
            warm = statistics.median(t.call(name)[1] for _ in range(5))
            for case in ("unloaded", "loaded"):
                runs = [cold(t, name, models, loaded=case == "loaded") for _ in range(args.repeats)]
                first = statistics.median(r["first_byte_s"] for r in runs)
                total = statistics.median(r["total_s"] for r in runs)
                phases = {p: statistics.median(r["phases"][p] for r in runs) for p in PHASES}
                target = TARGETS.get((name, case))
                verdict = "-" if target is None else f"<= {target} s: {'met' if total <= target else 'not met'}"
                rows.append(
                    [name, f"model {case}", fmt(first, 2), fmt(total, 2), fmt(warm * 1e3, 0), fmt(total / warm, 0)]
                    + [fmt(phases[p], 2) for p in PHASES]
                    + [verdict]
                )
                out.append(
                    {"function": name, "case": case, "first_byte_s": first, "total_s": total, "warm_s": warm, "phases": phases}
                )
                print(f"{name}, model {case}: {total:.2f} s from zero (warm {warm * 1e3:.0f} ms)", flush=True)
    print()
    headers = ["function", "from zero", "first byte s", "answer s", "warm ms", "x warm", *(f"{p} s" for p in PHASES), "target"]
    print_table(headers, rows)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0

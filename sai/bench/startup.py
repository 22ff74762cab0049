"""`sai bench startup`: how long a platform takes to become ready, and its memory.

For `sai up --only image-classify` and for the whole platform: the seconds from launching the
supervisor until it is ready (Triton has loaded its models, every function listens, the gateway
serves: what `sai up` waits for), and the memory of every process (supervisor + gateway, Triton
core, its Python backend stubs, the functions) after 20 warm-up classifications, so the figures
include what the first requests allocate: the sum of RSS (libraries shared between processes
count in each, as `ps` shows them) and of PSS (shared pages split, what the platform occupies).
Medians over `--repeats` starts.
"""

from __future__ import annotations

import json
import statistics

from sai.bench.harness import Client, fmt, memory_mb, print_table, started_platform
from sai.bench.image import photos

TARGETS = {"image-classify": (2.0, 450.0), "all": (4.0, None)}  # ready s, total RSS MB (docs/performance.md)


def measure(only: list[str]) -> tuple[float, dict[str, float], float]:
    """Seconds until ready, RSS per process and the PSS total (MB) of one start."""
    with started_platform(only) as (url, state, ready_s):
        client, images = Client(url), photos()
        for i in range(20):
            status, body = client.post("/function/image-classify", images[i % len(images)], "image/jpeg")
            if status != 200:
                raise RuntimeError(f"image-classify answered {status}: {body[:200]!r}")
        return ready_s, memory_mb(state), sum(memory_mb(state, "pss").values())


def run(args) -> int:
    rows, out = [], []
    for label, only in (("image-classify", ["image-classify"]), ("all", [])):
        runs = [measure(only) for _ in range(args.repeats)]
        ready = statistics.median(r[0] for r in runs)
        _, mid, pss = sorted(runs, key=lambda r: sum(r[1].values()))[len(runs) // 2]  # the median start by total RSS
        total = sum(mid.values())
        ready_target, rss_target = TARGETS[label]
        rows.append(
            [
                f"sai up --only {label}" if only else "sai up",
                fmt(ready, 2),
                f"<= {ready_target}",
                fmt(total, 0),
                f"<= {rss_target:.0f}" if rss_target else "-",
                fmt(pss, 0),
                ", ".join(f"{k} {v:.0f}" for k, v in mid.items()),
            ]
        )
        out.append({"platform": label, "ready_s": ready, "rss_mb": mid, "rss_total_mb": total, "pss_total_mb": pss})
        print(f"{label}: ready after {ready:.2f} s, {total:.0f} MB", flush=True)
    print()
    print_table(["platform", "ready s", "target", "RSS MB", "target", "PSS MB", "RSS per process (MB)"], rows)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0

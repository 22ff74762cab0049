"""`sai metrics`: a short live summary per function (gateway /metrics) and per model (Triton's
metrics port) of the platform `sai up` started."""

from __future__ import annotations

import time
import urllib.error

from sai import paths
from sai.local import metrics_summary
from sai.sai_error import SaiError
from sai.state import read_state


def register(sub) -> None:
    p = sub.add_parser("metrics", help="calls/s, p50/p99, errors per function; Triton queue and compute time per model")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between the two scrapes (default: %(default)s)")
    p.add_argument("--watch", action="store_true", help="print a new summary every interval until Ctrl-C")
    p.set_defaults(func=cmd_metrics)


def cmd_metrics(args) -> int:
    state = read_state(paths.state_dir())
    if not state.get("gateway"):
        raise SaiError("the platform is not running (start it with `sai up`)", exit_code=3)
    triton = (state.get("triton") or {}).get("metrics")
    while True:
        try:
            print(metrics_summary.report(state["gateway"], triton, args.interval), flush=True)
        except (urllib.error.URLError, OSError) as exc:
            raise SaiError(f"could not read the metrics: {exc}") from None
        if not args.watch:
            return 0
        print(time.strftime("-- %H:%M:%S"), flush=True)

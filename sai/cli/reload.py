"""`sai reload`: ask the running `sai up` supervisor (SIGHUP) to load new or changed models and to
start new or restart changed functions (Platform.reload: sai/local/triton_supervisor.py and
fleet.py); print what changed."""

from __future__ import annotations

import json
import os
import pathlib
import signal

from sai import paths
from sai.local.processes import wait_until
from sai.sai_error import SaiError
from sai.state import read_pid

REPORT = "reload.json"  # in the state folder: the supervisor writes it, `sai reload` reads it


def register(sub) -> None:
    p = sub.add_parser(
        "reload",
        help="load new/changed models and start new/restart changed functions in the running platform",
        description="For a running `sai up`: models added or changed in model_repository/ are loaded into Triton "
        "(its model-control API), functions new in stack.yml are started and changed ones restarted; nothing "
        "else stops. Prints what changed; exit 1 when something failed to load or start.",
    )
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the reload (default: %(default)s)")
    p.set_defaults(func=cmd_reload)


def write_reload_report(state_dir: pathlib.Path, report: dict) -> None:
    path = state_dir / REPORT
    seq = _read(path).get("seq", 0) + 1
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"seq": seq, **report}, indent=2))
    tmp.replace(path)


def _read(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def cmd_reload(args) -> int:
    state_dir = paths.state_dir()
    pid = read_pid(state_dir)
    if pid is None:
        raise SaiError("the platform is not running: start it with `sai up`", exit_code=3)
    path = state_dir / REPORT
    seq = _read(path).get("seq", 0)
    os.kill(pid, signal.SIGHUP)

    def stopped() -> str | None:  # e.g. killed meanwhile: no report will come
        return (
            None if read_pid(state_dir) == pid else f"the platform (pid {pid}) stopped during the reload; see `sai logs platform`"
        )

    try:
        report = wait_until(lambda: (r := _read(path)).get("seq", 0) > seq and r, args.timeout, 0.2, fail=stopped)
    except RuntimeError as exc:
        raise SaiError(str(exc), exit_code=3) from None
    if not report:
        raise SaiError(f"no reload report after {args.timeout:.0f}s; see `sai logs platform`")
    for line in describe(report):
        print(line)
    return 1 if report["models"]["failed"] or report["functions"]["failed"] else 0


def describe(report: dict) -> list[str]:
    """Human lines for `sai reload`."""
    lines = []
    for part in ("models", "functions"):
        for kind, names in report[part].items():
            if kind == "failed":
                lines += [f"{part[:-1]} {n}: FAILED: {why}" for n, why in names.items()]
            elif kind == "skipped":
                lines.append(f"models: {names}")
            else:
                lines += [f"{part[:-1]} {n}: {kind}" for n in names]
    return lines or ["nothing changed"]

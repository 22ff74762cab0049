"""Every `sai up` option reaches the background supervisor: `sai up` hands it its Settings whole
(a JSON file in the state folder, 0600), never a rebuilt command line, and the supervisor records
the settings it runs with in its state file. --auth-functions, which the rebuilt command line once
dropped (with --callback-allow), is also checked by what the running gateway does: 401."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys

import pytest
import requests

from sai.cli import build_parser
from sai.local.platform_settings import Settings
from sai.state import free_port

pytestmark = pytest.mark.slow

# Options that are not settings: how to run `sai up`, not what runs.
NOT_SETTINGS = {"help", "foreground", "timeout", "settings_file"}


def _up_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse keeps sub-parsers here
    return sub.choices["up"]


def _values() -> dict[str, tuple[list[str], object]]:
    """dest -> (the command-line tokens, the value the settings must then hold), none a default."""
    triton = f"127.0.0.1:{free_port()}"  # nobody listens: no Triton is started, none is reached
    port, nats_port = free_port(), free_port()
    return {
        "host": (["--host", "localhost"], "localhost"),
        "allowed_hosts": (["--allow-host", "sai.example"], ["sai.example"]),
        "port": (["--port", str(port)], port),
        **{
            k: ([f"--{k.replace('_', '-')}", str(p)], p)
            for k in ("triton_http_port", "triton_grpc_port", "triton_metrics_port", "s3_port")
            for p in [free_port()]
        },
        "triton_log_verbose": (["--triton-log-verbose", "1"], 1),
        "triton_url": (["--triton-url", triton], triton),
        "with_s3": (["--with-s3"], True),
        "only": (["--only", "text-embed"], ["text-embed"]),
        "callback_allow": (["--callback-allow", "10.0.0.0/8"], ["10.0.0.0/8"]),
        "auth_functions": (["--auth-functions"], True),
        "triggers.nats_url": (["--nats-url", "nats://127.0.0.1:9"], "nats://127.0.0.1:9"),  # no topic here: never dialled
        "triggers.nats_port": (["--nats-port", str(nats_port)], nats_port),
        "zero_duration_s": (["--zero-duration", "90s"], 90.0),
        "models_memory_mb": (["--models-memory", "700"], 700.0),
        "wake_timeout_s": (["--wake-timeout", "12.5"], 12.5),
    }


def test_every_up_option_is_a_setting_and_covered_here():
    fields = {f.name for f in dataclasses.fields(Settings)}
    options = {a.dest for a in _up_parser()._actions} - NOT_SETTINGS
    tops = {o.partition(".")[0] for o in options}  # `triggers.nats_port`: a field of Settings.triggers
    assert tops <= fields, f"`sai up` options that are not Settings fields: {sorted(tops - fields)}"
    assert options == set(_values()), "give each `sai up` option a value in this test"


def test_every_option_reaches_the_background_supervisor(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAI_")} | {"SAI_STATE_DIR": str(tmp_path)}
    values = _values()
    argv = [token for tokens, _ in values.values() for token in tokens]
    up = subprocess.run([sys.executable, "-m", "sai", "up", *argv], env=env, capture_output=True, text=True, timeout=240)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        settings_file = tmp_path / "run" / "settings.json"
        assert stat.S_IMODE(settings_file.stat().st_mode) == 0o600
        running = json.loads((tmp_path / "run" / "state.json").read_text())["settings"]
        for dest, (_, value) in values.items():
            found = running
            for part in dest.split("."):
                found = found[part]
            assert found == value, dest

        gateway = f"http://localhost:{values['port'][1]}"
        # --auth-functions: a function call without credentials is refused
        bare = requests.post(f"{gateway}/function/text-embed", json={"text": "hi"}, timeout=30)
        assert bare.status_code == 401 and bare.json()["error"]["code"] == "unauthorized"
    finally:
        down = subprocess.run([sys.executable, "-m", "sai", "down"], env=env, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr

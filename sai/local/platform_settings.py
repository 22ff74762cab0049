"""The local platform's settings: the one place each is declared with its default.

`sai up` parses its options into a `Settings` (an option's dest is the field's name, its default
the field's, sai/cli/lifecycle.py); the background supervisor receives it whole as a JSON file in
the state folder (`save`/`load`, 0600), never as a rebuilt command line; the parts take what they
need from it: the gateway (gateway.py), async calls (async_calls.py), the Triton supervisor
(triton_supervisor.py), the function fleet (fleet.py) and the S3 parts (s3_server.py,
s3_events.py). The running supervisor records the settings it runs with in its state file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import typing
from dataclasses import dataclass, field
from typing import Any

from common.settings import setting
from sai import paths
from sai.local import s3_events
from sai.local.processes import Restarts
from sai.local.scale_policy import Defaults
from sai.local.triggers.runtime import TriggerSettings

# Defaults a user may set in the environment instead of on the command line.
SAI_PORT = setting("SAI_PORT", int, 8080, low=1, high=65535)
SAI_CALLBACK_ALLOW = setting("SAI_CALLBACK_ALLOW", str, "")  # comma-separated CIDR or host:port
SAI_AUTH_FUNCTIONS = setting("SAI_AUTH_FUNCTIONS", int, 0, low=0, high=1)
SAI_ALLOW_HOSTS = setting("SAI_ALLOW_HOSTS", str, "")  # comma-separated host names


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@dataclass
class Settings:
    host: str = "127.0.0.1"  # the gateway's address; Triton and the functions stay on loopback
    # Host names the gateway answers to besides localhost, this host's name and IPs (DNS rebinding)
    allowed_hosts: list[str] = field(default_factory=lambda: _csv(SAI_ALLOW_HOSTS()))
    port: int = field(default_factory=SAI_PORT)  # gateway
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    triton_log_verbose: int = 0  # 1 logs each inference with its request id (the X-Call-Id)
    triton_url: str | None = None  # use this Triton (host:port) instead of starting one
    upstream_timeout_s: float = 60.0
    max_body_bytes: int = 32 * 1024 * 1024
    state_dir: pathlib.Path = field(default_factory=paths.state_dir)
    stack_file: pathlib.Path = field(default_factory=lambda: paths.repo_root() / "stack.yml")
    model_repository: pathlib.Path = field(default_factory=paths.model_repository)
    function_env: dict[str, dict[str, str]] = field(default_factory=dict)  # extra env per function
    only: list[str] | None = None  # start just these functions (default: all in stack.yml)
    with_s3: bool = False  # start a local S3 server (moto) for object-classify
    s3_port: int = 9000
    # Delivery of bucket events to object-classify, with MinIO's webhook timings (s3_events.py).
    s3_event_timeout_s: float = s3_events.RESPONSE_HEADER_TIMEOUT_S
    s3_event_retry_s: float = s3_events.RETRY_INTERVAL_S
    async_concurrency: int = 2  # async calls run at once
    async_queue_limit: int = 100  # accepted-but-unfinished async calls before 429
    # private CIDRs / host:port that async callbacks may reach
    callback_allow: list[str] = field(default_factory=lambda: _csv(SAI_CALLBACK_ALLOW()))
    # Overload and hostile clients (gateway.py, admission.py): max_inflight itself is per
    # function, in stack.yml's environment.
    max_queued: int = 16  # calls per function that may wait for a slot
    queue_wait_s: float = 10.0  # how long one may wait before 503
    max_buffered_bytes: int = 128 * 1024 * 1024  # async bodies held in memory at once
    header_timeout_s: float = 15.0  # a connection must send its request headers (and idle keep-alives last) this long
    body_idle_timeout_s: float = 10.0  # longest pause in a request body
    auth: bool = True  # basic auth on /system/* (credentials in <state>/secrets)
    auth_functions: bool = field(default_factory=lambda: bool(SAI_AUTH_FUNCTIONS()))  # ... and on the function routes
    # Supervision: restarts after 1, 2, 4 ... s; FAILED after this many deaths in a row.
    restart_delay_s: float = 1.0
    restart_limit: int = 5
    liveness_failures: int = 3  # failed liveness probes in a row (Triton, a function) before it is killed and restarted
    triggers: TriggerSettings = field(default_factory=TriggerSettings)  # schedules, topics, database changes
    # Scaling (docs/scaling.md; a function's com.openfaas.scale.* labels come first): functions that
    # set no `zero` label go to zero after this idle time, None never (OpenFaaS's own default); a
    # model no running function needs is unloaded after its functions' zero-duration.
    zero_duration_s: float | None = 900.0
    models_memory_mb: float | None = None  # what Triton's loaded models may take; least recently used go first
    wake_timeout_s: float = 30.0  # a call held while its function wakes from zero gets 503 past this

    def scale_defaults(self) -> Defaults:
        """What a function that sets no scaling label gets here (sai/local/scale_policy.py)."""
        return Defaults(zero=self.zero_duration_s is not None, zero_duration_s=self.zero_duration_s or Defaults.zero_duration_s)

    def restarts(self) -> Restarts:
        return Restarts(first_delay_s=self.restart_delay_s, limit=self.restart_limit)

    def to_json(self) -> dict[str, Any]:
        """Every field, as JSON values (paths as strings)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Settings:
        return _build(cls, doc)

    def save(self, path: pathlib.Path) -> None:
        """Write to `path` (0600, replaced atomically): how `sai up` hands them to its supervisor."""
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_json(), f, indent=2)
        tmp.replace(path)

    @classmethod
    def load(cls, path: pathlib.Path) -> Settings:
        return cls.from_json(json.loads(path.read_text()))


def settings_path(state_dir: pathlib.Path) -> pathlib.Path:
    """Where `sai up` writes the settings its background supervisor starts with."""
    return state_dir / "run" / "settings.json"


def _build(cls: type, doc: dict[str, Any]) -> Any:
    """A dataclass from its JSON: paths become Paths and nested dataclasses are built likewise;
    unknown keys are refused (a settings file from another version of sai)."""
    hints = typing.get_type_hints(cls)
    unknown = set(doc) - set(hints)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    values = {}
    for name, value in doc.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = _build(typing.cast(type, hint), value)
        elif hint is pathlib.Path and value is not None:
            value = pathlib.Path(value)
        values[name] = value
    return cls(**values)

"""The OpenFaaS gateway's /system/* API on the local platform (spec: openfaas/faas
api-docs/spec.openapi.yml, 0.8.12), so that faas-cli works against `sai up` as against a cluster.

  faas-cli version          GET  /system/info
  faas-cli namespaces       GET  /system/namespaces                     ["openfaas-fn"]
  faas-cli list / describe  GET  /system/functions, /system/function/<name>
  faas-cli deploy / remove  POST, PUT / DELETE /system/functions         (sai/local/deployments.py)
  faas-cli scale            POST /system/scale-function/<name>           N processes, balanced by the gateway
  faas-cli secret ...       GET, POST, PUT, DELETE /system/secrets       (sai/local/secrets_store.py)
  faas-cli logs             GET  /system/logs                            ndjson, `follow` streams (for the upstream timeout)
  AlertManager              POST /system/alert                           scale up within com.openfaas.scale.max

Request and response shapes are faas-provider's types/ (requests.go, function_deployment.go,
secret.go, logs/logs.go) as faas-cli's proxy/ package sends and reads them. There is one
namespace, openfaas-fn: another named in a query or path is 404, as faas-netes answers for an
unknown namespace (400 where the spec documents no 404). Errors are JSON {"error": {code, message}}.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import functools
import json
import math
import pathlib
import platform as host
import subprocess
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aiohttp import web

from sai import __version__, paths
from sai.local import logs
from sai.local.deployments import NAMESPACE
from sai.local.responses import GatewayError
from sai.local.responses import error_response as error
from sai.local.scale_policy import FACTOR, scale_policy
from sai.local.secrets_store import MAX_VALUE_BYTES, SecretStore

if TYPE_CHECKING:
    from sai.local.function_replicas import RunningFunction
    from sai.local.gateway_metrics import GatewayMetrics

T = TypeVar("T")

SCALE_FACTOR = 10  # faas gateway/scaling/ranges.go DefaultScalingFactor
# A secret's request: a value of at most 1 MiB (secrets_store.MAX_VALUE_BYTES) as base64 or JSON text.
SECRET_BODY_BYTES = 2 * MAX_VALUE_BYTES
FOLLOW_POLL_S = 0.25


@functools.cache
def version_info() -> dict:
    """faas-provider types.VersionInfo of this checkout (sha empty outside a git clone)."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(paths.repo_root()), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return {"sha": sha, "release": __version__}


def check_namespace(namespace: object, status: int = 404) -> None:
    if namespace not in (None, "", NAMESPACE):
        raise GatewayError(status, "namespace_not_found", f"namespace {namespace!r} not found; this platform has {NAMESPACE!r}")


async def read_capped(request: web.Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes `limit` bytes: never held whole when larger."""
    if request.content_length is not None and request.content_length > limit:
        raise GatewayError(
            413, "body_too_large", f"request body of {request.content_length} bytes; this route takes {limit}", close=True
        )
    chunks, seen = [], 0
    async for chunk in request.content.iter_any():
        seen += len(chunk)
        if seen > limit:
            raise GatewayError(413, "body_too_large", f"request body larger than {limit} bytes", close=True)
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: web.Request, optional: bool = False, limit: int | None = None) -> dict:
    """The JSON object a route takes; `optional`: the spec makes the body optional, none is {};
    `limit`: at most this many bytes (else the gateway's cap)."""
    try:
        raw = await (read_capped(request, limit) if limit is not None else request.read())
        body = json.loads(raw or (b"{}" if optional else b"null"))
    except (ValueError, UnicodeDecodeError):
        raise GatewayError(400, "invalid_json", "the body must be JSON") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "invalid_json", "the body must be a JSON object")
    return body


def parse_logs_query(query: Mapping[str, str]) -> dict:
    """faas-cli's logs query (proxy/logs.go reqAsQueryValues): name, namespace, instance, follow,
    since (RFC 3339), tail (<= 0: all)."""
    if not query.get("name"):  # 404 as for any name of no function (the spec documents no 400 here)
        raise GatewayError(404, "function_not_found", "name is required: the function whose logs to read")
    check_namespace(query.get("namespace"))
    follow = query.get("follow", "false").lower()
    if follow not in ("true", "false", "1", "0", ""):
        raise GatewayError(400, "invalid_parameter", "follow must be true or false")
    try:
        tail = int(query.get("tail") or 0)
        since = dt.datetime.fromisoformat(query["since"].replace("Z", "+00:00")) if query.get("since") else None
    except ValueError:
        raise GatewayError(400, "invalid_parameter", "tail must be an integer and since an RFC 3339 time") from None
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    return {
        "name": query["name"],
        "instance": query.get("instance") or None,
        "follow": follow in ("true", "1"),
        "tail": tail,
        "since": since,
    }


class Control(Protocol):
    """What the API changes the platform through (sai/local/platform.py's Platform)."""

    @property
    def secret_store(self) -> SecretStore: ...

    @property
    def logs(self) -> pathlib.Path: ...

    def deploy(self, request: object, update: bool) -> None: ...

    def remove(self, name: str) -> None: ...

    def scale(self, name: str, replicas: int) -> int: ...


class SystemAPI:
    """The routes; `functions` is what runs (the fleet's dict, read only here), `metrics` counts
    the calls, `follow_s` bounds a followed log stream (the gateway's upstream timeout) and
    `control` makes the changes."""

    def __init__(self, functions: Mapping[str, RunningFunction], metrics: GatewayMetrics, follow_s: float, control: Control):
        self.functions, self.metrics, self.follow_s, self.control = functions, metrics, follow_s, control
        self.closing = False

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/system/info", self.info)
        r.add_get("/system/namespaces", self.namespaces)
        r.add_get("/system/functions", self.list_functions)
        r.add_post("/system/functions", functools.partial(self.deploy, update=False))
        r.add_put("/system/functions", functools.partial(self.deploy, update=True))
        r.add_delete("/system/functions", self.remove)
        r.add_get("/system/function/{name}", self.get_function)
        r.add_post("/system/scale-function/{name}", self.scale)
        r.add_get("/system/secrets", self.list_secrets)
        r.add_post("/system/secrets", functools.partial(self.put_secret, create=True))
        r.add_put("/system/secrets", functools.partial(self.put_secret, create=False))
        r.add_delete("/system/secrets", self.delete_secret)
        r.add_get("/system/logs", self.logs)
        r.add_post("/system/alert", self.alert)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, app: web.Application) -> None:
        self.closing = True  # ends `follow` streams, which would otherwise hold the shutdown

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """A platform change (it starts and stops processes) off the event loop; its DeployError
        or SecretError reaches the gateway's middleware, which answers it."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # -- info and functions -----------------------------------------------------------------------
    async def info(self, request: web.Request) -> web.Response:
        # faas gateway's GatewayInfo around faas-provider's ProviderInfo (types/requests.go)
        provider = {"provider": "sai", "orchestration": "local", "version": version_info()}
        return web.json_response({"provider": provider, "version": version_info(), "arch": host.machine()})

    async def namespaces(self, request: web.Request) -> web.Response:
        return web.json_response([NAMESPACE])

    def describe(self, name: str, fn: RunningFunction) -> dict:
        """faas-provider types.FunctionStatus, with the replicas that run and answer."""
        spec = fn.spec
        return {
            "name": name,
            "image": spec.image,
            "namespace": NAMESPACE,
            "envProcess": "",
            "envVars": spec.environment,
            "secrets": spec.secrets,
            "labels": spec.labels,
            "annotations": spec.annotations,
            "replicas": fn.wanted,
            "availableReplicas": fn.available(),
            "invocationCount": self.metrics.invocations(name),
        }

    async def list_functions(self, request: web.Request) -> web.Response:
        check_namespace(request.query.get("namespace"))
        functions = dict(self.functions)  # a deploy or remove may change it meanwhile
        return web.json_response([self.describe(n, functions[n]) for n in sorted(functions)])

    async def get_function(self, request: web.Request) -> web.Response:
        check_namespace(request.query.get("namespace"))
        name = request.match_info["name"]
        if (fn := self.functions.get(name)) is None:
            return error(404, "function_not_found", f"no function named {name!r}")
        return web.json_response(self.describe(name, fn))

    async def deploy(self, request: web.Request, update: bool) -> web.Response:
        body = await json_body(request)
        check_namespace(body.get("namespace"), 404 if update else 400)
        await self._run(self.control.deploy, body, update)
        return web.Response(status=200 if update else 202)  # the spec's codes for update / deploy

    async def remove(self, request: web.Request) -> web.Response:
        body = await json_body(request)  # faas-provider types.DeleteFunctionRequest
        check_namespace(body.get("namespace"))
        name = body.get("functionName")
        if not isinstance(name, str):  # "" is a valid string naming no function: 404
            return error(400, "missing_field", "functionName is required")
        await self._run(self.control.remove, name)
        return web.Response(status=200)

    async def scale(self, request: web.Request) -> web.Response:
        body = await json_body(request, optional=True)  # faas-provider types.ScaleServiceRequest
        check_namespace(body.get("namespace"))
        replicas = body.get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            return error(400, "invalid_field", "replicas must be a whole number, 0 or more")
        await self._run(self.control.scale, request.match_info["name"], replicas)
        return web.Response(status=202)

    async def alert(self, request: web.Request) -> web.Response:
        """AlertManager's webhook: each firing alert's function scales up by ceil(max * factor%),
        up to com.openfaas.scale.max; a resolved one goes back to its min (faas
        gateway/handlers/alerthandler.go CalculateReplicas). Unknown functions are skipped, as there."""
        body = await json_body(request, optional=True)
        alerts = body.get("alerts") or []
        if not isinstance(alerts, list):
            return error(400, "invalid_field", "alerts must be a list")
        for alert in alerts:
            labels = alert.get("labels") if isinstance(alert, dict) else None
            name = labels.get("function_name") if isinstance(labels, dict) else None
            if not isinstance(name, str):
                continue
            base, dot, namespace = name.rpartition(".")
            name = base if dot and namespace == NAMESPACE else name
            fn = self.functions.get(name)
            if fn is None:
                continue
            policy = scale_policy(fn.spec.labels)
            low, high = policy.min, policy.max
            factor = fn.spec.labels.get(FACTOR, "")
            step = math.ceil(high / 100 * (int(factor) if factor.isdigit() else SCALE_FACTOR))
            wanted = min(fn.wanted + step, high) if alert.get("status") == "firing" and step > 0 else low
            if wanted != fn.wanted:
                await self._run(self.control.scale, name, wanted)
        return web.Response(status=200)

    # -- secrets ------------------------------------------------------------------------------------
    async def list_secrets(self, request: web.Request) -> web.Response:
        check_namespace(request.query.get("namespace"))
        store = self.control.secret_store
        return web.json_response([{"name": n, "namespace": NAMESPACE} for n in store.names()])

    async def put_secret(self, request: web.Request, create: bool) -> web.Response:
        body = await json_body(request, limit=SECRET_BODY_BYTES)  # faas-provider types.Secret: value, or rawValue (base64)
        check_namespace(body.get("namespace"), 400 if create else 404)
        value, raw = body.get("value"), body.get("rawValue")
        try:
            data = base64.b64decode(raw, validate=True) if raw else (value or "").encode()
        except (binascii.Error, TypeError, AttributeError, ValueError):
            return error(400, "invalid_base64", "value must be a string and rawValue base64")
        store = self.control.secret_store
        await self._run(store.create if create else store.update, body.get("name"), data)
        return web.Response(status=201 if create else 200)

    async def delete_secret(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        check_namespace(body.get("namespace"))
        await self._run(self.control.secret_store.delete, body.get("name"))
        return web.Response(status=204)

    # -- logs -----------------------------------------------------------------------------------------
    def _log_files(self, name: str) -> dict:
        """instance -> log file of each replica the function has had (function_replicas.py names them)."""
        folder = self.control.logs
        files = {f"{name}-0": folder / f"function-{name}.log"}
        for path in folder.glob(f"function-{name}.*.log"):
            index = path.name[len(f"function-{name}.") : -len(".log")]
            if index.isdigit():
                files[f"{name}-{index}"] = path
        return files

    async def logs(self, request: web.Request) -> web.StreamResponse:
        """faas-provider logs.Message per line, application/x-ndjson (logs/handler.go)."""
        q = parse_logs_query(request.query)
        name = q["name"]
        if name not in self.functions:
            return error(404, "function_not_found", f"no function named {name!r}")
        files = {i: p for i, p in self._log_files(name).items() if q["instance"] in (None, i)}
        if not files:
            return error(404, "not_found", f"no instance {q['instance']!r} of {name!r}")
        epoch = dt.datetime.fromtimestamp(0, dt.UTC)
        lines, offsets = [], {}
        for instance, path in files.items():
            read, offsets[instance], _ = logs.read_log(path, epoch)
            lines += [(t, instance, text) for t, text in read if q["since"] is None or t >= q["since"]]
        lines.sort(key=lambda line: line[0])  # stable: each file's own order is kept
        if q["tail"] > 0:
            lines = lines[-q["tail"] :]
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)

        def message(stamp: dt.datetime, instance: str, text: str) -> bytes:
            doc = {"name": name, "namespace": NAMESPACE, "instance": instance, "timestamp": stamp.isoformat(), "text": text}
            return (json.dumps(doc) + "\n").encode()

        try:
            await resp.write(b"".join(message(*line) for line in lines))
            # the spec: follow "will stream logs until the request timeout", the gateway's upstream one
            until = asyncio.get_running_loop().time() + self.follow_s
            while q["follow"] and not self.closing and name in self.functions:
                if asyncio.get_running_loop().time() >= until:
                    break
                await asyncio.sleep(FOLLOW_POLL_S)
                for instance, path in self._log_files(name).items():
                    if q["instance"] not in (None, instance):
                        continue
                    now = dt.datetime.now(dt.UTC)
                    read, offsets[instance], _ = logs.read_log(path, now, offsets.get(instance, 0))
                    if read:
                        await resp.write(b"".join(message(t, instance, text) for t, text in read))
            await resp.write_eof()
        except ConnectionResetError:  # the client went away (faas-cli logs --follow ended with ^C)
            pass
        return resp

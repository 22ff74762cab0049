"""`sai reload`: bring a running platform up to date with model_repository/ and stack.yml, without
stopping anything else.

- Models: each model folder is fingerprinted (every file's path, size and mtime) when Triton
  starts; a reload loads new and changed models and unloads removed ones through Triton's
  model-control API (explicit mode, over gRPC on the platform's private socket, see
  triton_server.py), then runs
  each once on zeros (sai/local/model_check.py). A model Triton refuses or cannot run (a broken
  config) is reported with Triton's message, and a new one is unloaded again; the others keep serving.
- Functions: stack.yml is read again; functions new to it are started, running functions whose
  build context (handler files, `configuration.copy`, environment) changed are restarted, as are
  those not running (FAILED: the supervisor gave up on them), and functions removed from it are
  stopped. The gateway routes by the same dict, so it sees them at once.

The supervisor runs `reload(platform)` on SIGHUP and writes the report to `<state>/reload.json`;
`sai reload` sends the signal and prints the report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pathlib
import shutil

from sai.local.model_check import infer_zeros
from sai.local.model_deps import needed_models
from sai.local.stack import build_context, load_stack
from sai.models.config import read_config

log = logging.getLogger(__name__)

REPORT = "reload.json"


def model_fingerprints(repo: pathlib.Path) -> dict[str, str]:
    out = {}
    for config in sorted(repo.glob("*/config.pbtxt")):
        digest = hashlib.sha256()
        for f in sorted(p for p in config.parent.rglob("*") if p.is_file()):
            st = f.stat()
            digest.update(f"{f.relative_to(config.parent)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        out[config.parent.name] = digest.hexdigest()
    return out


def tree_digest(path: pathlib.Path, env: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps(env, sort_keys=True).encode())
    for f in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{f.relative_to(path)}\0".encode() + f.read_bytes())
    return digest.hexdigest()


def _triton_call(triton, model: str, action: str) -> str | None:
    """Load or unload `model` (action "load" or "unload") over Triton's private gRPC socket; None
    when done, else Triton's message.

    The request is encoded here rather than with tritonclient.grpc, whose import registers
    Triton's protos in protobuf's default pool, where the kserve SDK (`sai cluster`) registers the
    same names: protobuf then refuses the second in the process (see sai/models/config.py)."""
    import grpc

    method = f"/inference.GRPCInferenceService/RepositoryModel{action.capitalize()}"
    with grpc.insecure_channel(triton.grpc_url) as channel:
        try:
            channel.unary_unary(method)(model_request(model), timeout=300)  # bytes in, bytes out
            return None
        except grpc.RpcError as exc:
            unreachable = exc.code() == grpc.StatusCode.UNAVAILABLE
            return ("Triton unreachable: " if unreachable else "") + (exc.details() or str(exc.code()))


def model_request(model: str) -> bytes:
    """RepositoryModelLoadRequest or RepositoryModelUnloadRequest (the same fields) naming `model`:
    field 2, model_name, a length-delimited string (Triton's grpc_service.proto)."""
    name = model.encode()
    return b"\x12" + _varint(len(name)) + name


def _varint(n: int) -> bytes:
    """Protobuf's base-128 varint."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _runs(triton, name: str) -> str | None:
    """None when the loaded model answers one inference on zeros; else why."""
    config_file = triton.model_repository / name / "configs" / f"{triton.config_name}.pbtxt"
    try:
        infer_zeros(
            triton.url, name, read_config(config_file if config_file.is_file() else config_file.parents[1] / "config.pbtxt")
        )
    except Exception as exc:  # noqa: BLE001 - whatever one model does (a config too big to check, one
        # that cannot be read), it is reported as failed and the rest of the platform keeps serving
        return f"loaded, but {exc}" if isinstance(exc, RuntimeError) else f"loaded, but its check failed: {exc!r}"
    return None


def _load_checked(triton, name: str, new: bool) -> str | None:
    """Load (or reload) `name` and run it once; None when it serves, else why. A `new` model that
    does not run is unloaded again, not left half-working in Triton."""
    error = _triton_call(triton, name, "load")
    if error is None and (error := _runs(triton, name)) is not None and new:
        _triton_call(triton, name, "unload")
    return error


def _reload_models(platform, report: dict) -> None:
    triton = platform.triton
    if triton is None or not triton.model_control:
        report["models"]["skipped"] = "Triton is not started by this platform (--triton-url): reload it yourself"
        return
    now = model_fingerprints(platform.settings.model_repository)
    before = platform.model_fingerprints
    wanted = _wanted_models(platform, now)
    for name in sorted(now):
        if before.get(name) == now[name] or name not in wanted:
            continue
        error = _load_checked(triton, name, new=name not in before)
        if error is None:
            report["models"]["reloaded" if name in before else "loaded"].append(name)
            before[name] = now[name]
        else:
            report["models"]["failed"][name] = error
    for name in sorted(set(before) - set(now)):
        if (error := _triton_call(triton, name, "unload")) is None:
            report["models"]["unloaded"].append(name)
            del before[name]
        else:
            report["models"]["failed"][name] = error
    platform.models_left_out -= set(before)
    if triton.models is not None:  # a restarted Triton loads what is loaded now
        triton.models = sorted(before)


def load_left_out(platform, specs) -> dict[str, str]:
    """Load the models `specs` call that `sai up --only` left out (a function deployed through the
    API after start); {model: why} for those that failed."""
    triton = platform.triton
    needed = needed_models(specs, platform.settings.model_repository)
    missing = platform.models_left_out if needed is None else platform.models_left_out & set(needed)
    if triton is None or not triton.model_control or not missing:
        return {}
    now, failed = model_fingerprints(platform.settings.model_repository), {}
    for name in sorted(missing):
        if error := _load_checked(triton, name, new=True):
            failed[name] = error
            continue
        platform.model_fingerprints[name] = now.get(name, "")
        platform.models_left_out.discard(name)
    if triton.models is not None:  # a restarted Triton loads them too
        triton.models = sorted(platform.model_fingerprints)
    return failed


def _wanted_models(platform, now: dict[str, str]) -> set[str]:
    """Every model, except those `sai up --only` left out at start that no function after this
    reload (running ones and those new to stack.yml) calls."""
    if not platform.models_left_out:
        return set(now)
    try:
        stack = load_stack(platform.settings.stack_file)
    except (OSError, ValueError, KeyError):
        return set(now) - platform.models_left_out
    names = [n for n in stack.functions if n in platform.functions or n not in platform.stack.functions]
    needed = needed_models([stack.functions[n] for n in names], platform.settings.model_repository)
    return set(now) if needed is None else set(now) - (platform.models_left_out - set(needed))


def _reload_functions(platform, report: dict, RunningFunction) -> None:  # noqa: N803 - the class platform.py passes
    stack = platform.load_stack()  # with what the API deployed and removed
    build = platform.settings.state_dir / "build"
    new = [n for n in stack.functions if n not in platform.stack.functions]
    wanted = {n: s for n, s in stack.functions.items() if n in platform.functions or n in new}
    for name in sorted(set(platform.functions) - set(stack.functions)):
        platform.functions.pop(name).stop()
        platform.secret_store.unmount(name)
        report["functions"]["stopped"].append(name)
    platform.stack.functions.update({n: stack.functions[n] for n in new})
    platform.stack.copy = stack.copy
    started = []
    for name, spec in wanted.items():
        env = platform._function_env(spec)
        staged = build_context(stack, spec, build / f"{name}.staged")
        running = platform.functions.get(name)
        # What the stack sets, not the whole environment (the supervisor's own may change meanwhile).
        # A function that is not running (FAILED: the supervisor gave up on it) is restarted even
        # when nothing changed.
        if (
            running is not None
            and running.alive()
            and tree_digest(staged, spec.environment) == tree_digest(running.context, running.spec.environment)
        ):
            shutil.rmtree(staged)
            continue
        if running is not None:
            running.stop()
        shutil.rmtree(build / name, ignore_errors=True)
        staged.rename(build / name)
        log_path, replicas = platform.logs / f"function-{name}.log", platform.deployments.replicas.get(name)
        fn = RunningFunction(spec, build / name, env, log_path, platform.settings.restarts(), replicas)
        platform.functions[name] = fn
        try:
            fn.start()
        except OSError as exc:  # e.g. its log cannot be opened: this one failed, the others go on
            report["functions"]["failed"][name] = f"could not start: {exc}"
            continue
        started.append((fn, "restarted" if running is not None else "started"))
    for fn, kind in started:
        try:
            fn.wait_ready()
            report["functions"][kind].append(fn.spec.name)
        except (TimeoutError, RuntimeError) as exc:
            report["functions"]["failed"][fn.spec.name] = str(exc)


def reload(platform, function_class) -> dict:
    """Bring `platform` (a sai.local.platform.Platform; function_class its RunningFunction) up to date."""
    report = {
        "models": {"loaded": [], "reloaded": [], "unloaded": [], "failed": {}},
        "functions": {"started": [], "restarted": [], "stopped": [], "failed": {}},
    }
    try:
        _reload_models(platform, report)
    except Exception as exc:  # noqa: BLE001 - a reload never stops the platform: it reports
        log.exception("reload: models")
        report["models"]["failed"]["model_repository"] = repr(exc)
    try:
        _reload_functions(platform, report, function_class)
    except (OSError, ValueError, KeyError) as exc:  # an unreadable stack.yml: nothing changed
        report["functions"]["failed"]["stack.yml"] = str(exc)
    log.info("reload: %s", json.dumps(report))
    return report


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

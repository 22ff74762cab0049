"""The function fleet: owns the functions that run, their processes (function_replicas.py), the
stack they come from (stack.yml with what the API deployed, removed and scaled: deployments.py)
and the secrets mounted for them (secrets_store.py). It starts and stops them, deploys, removes,
scales and reloads them, and restarts the replicas that die.

`functions` is what the gateway routes by. Changes happen under the platform's lock; the
gateway's event loop reads the dict without it (platform.py says who owns what).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import shutil
from dataclasses import replace

from sai.local.deployments import DeployError, Deployments, check_request, image_base, resolve
from sai.local.function_replicas import RunningFunction
from sai.local.platform_settings import Settings
from sai.local.processes import restart_when_due
from sai.local.scale_policy import MAX_REPLICAS, LabelError, ScalePolicy, scale_policy
from sai.local.secrets_store import SecretStore
from sai.local.stack import Function, Stack, build_context, load_stack

log = logging.getLogger(__name__)


def tree_digest(path: pathlib.Path, env: dict[str, str]) -> str:
    """A build context's files and the environment the stack gives it: what a reload compares."""
    digest = hashlib.sha256(json.dumps(env, sort_keys=True).encode())
    for f in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{f.relative_to(path)}\0".encode() + f.read_bytes())
    return digest.hexdigest()


class FunctionFleet:
    def __init__(self, settings: Settings, triton_url: str | None = None):
        self.settings = settings
        self.triton_url = triton_url or settings.triton_url or ""  # what each function's TRITON_URL says (the platform sets it)
        self.logs = settings.state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.build = settings.state_dir / "build"
        self.deployments = Deployments.load(settings.state_dir)
        self.secret_store = SecretStore(settings.state_dir)
        self.stack = self.load_stack()
        unknown = set(settings.only or []) - set(self.stack.functions)
        if unknown:
            raise ValueError(f"not in {settings.stack_file.name}: {', '.join(sorted(unknown))}")
        for spec in self.stack.functions.values():
            self.policy(spec)  # a bad scaling label stops `sai up` with its name
        # Extra environment per function: the settings', and what the platform adds (the local S3's).
        self.extra_env = {name: dict(env) for name, env in settings.function_env.items()}
        self.functions: dict[str, RunningFunction] = {}

    def load_stack(self) -> Stack:
        """stack.yml as the API changed it: what runs."""
        return self.deployments.apply(load_stack(self.settings.stack_file))

    def function_env(self, spec: Function) -> dict[str, str]:
        env = dict(os.environ)
        env.update(spec.environment)
        env["TRITON_URL"] = self.triton_url  # stack.yml's value is the in-cluster address
        if spec.secrets:  # where /var/openfaas/secrets is mounted in a pod (secrets_store.py)
            env["SECRETS_DIR"] = str(self.secret_store.mount(spec.name, spec.secrets))
        for key in dict.fromkeys((image_base(spec.image), spec.name)):  # its code's (--with-s3), then its own
            env.update(self.extra_env.get(key, {}))
        return env

    def _new(self, spec: Function, context: pathlib.Path | None = None, env: dict[str, str] | None = None) -> RunningFunction:
        """A function's replicas (not started), on `context` or a fresh build context."""
        context = context or build_context(self.stack, spec, self.build / spec.name)
        log_path = self.logs / f"function-{spec.name}.log"
        env = env if env is not None else self.function_env(spec)
        return RunningFunction(spec, context, env, log_path, self.settings.restarts(), self.initial_replicas(spec))

    def initial_replicas(self, spec: Function) -> int:
        """What `spec` starts with: the scale API's count, kept across restarts, else its min; 0
        with a models budget when it may scale to zero, so no model loads before a call needs it."""
        replicas = self.deployments.replicas.get(spec.name)
        if replicas is not None:
            return replicas
        policy = self.policy(spec)
        return 0 if policy.zero and self.settings.models_memory_mb is not None else policy.min

    def policy(self, spec: Function) -> ScalePolicy:
        """How `spec` scales here: its labels, this platform's defaults, and at least the count
        the scale API set (`faas-cli scale` sets a floor the autoscaler keeps; docs/scaling.md)."""
        try:
            policy = scale_policy(spec.labels, self.settings.scale_defaults())
        except LabelError as exc:
            raise ValueError(f"function {spec.name}: {exc}") from None
        floor = self.deployments.replicas.get(spec.name, 0)
        return replace(policy, min=max(policy.min, floor), max=max(policy.max, floor)) if floor else policy

    def specs(self) -> list[Function]:
        """The functions `start` starts: all of the stack, or those of `--only`."""
        only = self.settings.only
        return [spec for name, spec in self.stack.functions.items() if not only or name in only]

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.secret_store.prune(self.stack.functions)  # copies of functions removed while it was down
        for spec in self.specs():
            fn = self.functions[spec.name] = self._new(spec)
            fn.start()
        for fn in self.functions.values():
            fn.wait_ready()
            log.info("function %s listening on port %d (%d replicas)", fn.spec.name, fn.port, fn.wanted)

    def stop(self) -> None:
        for fn in self.functions.values():
            fn.stop()

    def supervise(self) -> None:
        """Kill the replicas that hang, restart those that died, with back-off (each function
        counts its own)."""
        for fn in self.functions.values():
            if fn.alive():
                self._probe(fn)
            if not fn.alive():
                restart_when_due(fn.spec.name, fn.dead_process(), fn.restarts, fn.log_path, fn.start)

    def _probe(self, fn: RunningFunction) -> None:
        """Kill a replica that failed its liveness probe `liveness_failures` times in a row (a
        SIGSTOPped or hung process): the next round restarts it as a death, with back-off."""
        for r in fn.replicas:
            if r.live():
                r.probe_failures = 0
                continue
            r.probe_failures += 1
            log.warning("function %s liveness probe failed (%d in a row)", r.name, r.probe_failures)
            if r.probe_failures >= self.settings.liveness_failures:
                log.error("function %s hangs: %d liveness probes failed in a row; killing it", r.name, r.probe_failures)
                r.kill()  # a stopped process ignores SIGTERM

    # -- the API's deploy, remove and scale (system_api.py, through the platform) ---------------
    def check_deploy(self, request: object, update: bool) -> tuple[dict, Function]:
        """The deployment request checked against what runs: (its checked fields, the function it
        runs); DeployError says why not."""
        checked = check_request(request)
        name = checked["service"]
        if update and name not in self.functions:
            raise DeployError(404, "function_not_found", f"no function named {name!r} to update")
        if not update and name in self.functions:
            raise DeployError(400, "function_exists", f"function {name!r} exists; update it with PUT")
        missing = [s for s in checked["secrets"] if not self.secret_store.exists(s)]
        if missing:
            raise DeployError(400, "secret_not_found", f"no secret named {', '.join(missing)}; create it first")
        return checked, resolve(self.stack, checked)

    def deploy(self, checked: dict, spec: Function) -> RunningFunction:
        """Record the deployment and (re)start the function; returns it, not yet ready."""
        self.deployments.deploy(checked)
        self.stack.functions[spec.name] = spec
        if (running := self.functions.get(spec.name)) is not None:
            running.stop()  # before its build context is rewritten
        fn = self._new(spec)
        fn.start()
        self.functions[spec.name] = fn
        return fn

    def remove(self, name: str) -> None:
        """Stop `name` and forget it (also across `sai up`)."""
        if name not in self.functions:
            raise DeployError(404, "function_not_found", f"no function named {name!r}")
        self.functions.pop(name).stop()
        self.secret_store.unmount(name)
        self.stack.functions.pop(name, None)
        self.deployments.remove(name, in_stack=name in load_stack(self.settings.stack_file).functions)

    def scale(self, name: str, replicas: int) -> int:
        """Record the replicas the scale API asked for (at most 5, as OpenFaaS CE's gateway clamps
        in gateway/scaling/ranges.go; 0 as OpenFaaS Pro allows): the autoscaler's floor from now on,
        and what `sai up` starts it with. Returns the count; the autoscaler applies it."""
        replicas = min(max(replicas, 0), MAX_REPLICAS)
        if name not in self.functions:
            raise DeployError(404, "function_not_found", f"no function named {name!r}")
        self.deployments.scale(name, replicas)
        return replicas

    # -- sai reload ---------------------------------------------------------------------------------
    def upcoming(self) -> list[Function] | None:
        """The functions that run after a reload (those running, and those new to the stack);
        None when stack.yml cannot be read."""
        try:
            stack = self.load_stack()
        except (OSError, ValueError, KeyError):
            return None
        return [s for n, s in stack.functions.items() if n in self.functions or n not in self.stack.functions]

    def reload(self) -> dict:
        """stack.yml read again: functions new to it are started, those whose build context
        (handler files, `configuration.copy`, environment) changed are restarted, as are those not
        running (FAILED: the supervisor gave up on them), those removed from it stopped. The report's part: started, restarted, stopped, failed {name: why}."""
        report: dict = {"started": [], "restarted": [], "stopped": [], "failed": {}}
        try:
            self._reload(report)
        except (OSError, ValueError, KeyError) as exc:  # an unreadable stack.yml: nothing changed
            report["failed"]["stack.yml"] = str(exc)
        return report

    def _reload(self, report: dict) -> None:
        stack = self.load_stack()  # with what the API deployed and removed
        new = [n for n in stack.functions if n not in self.stack.functions]
        wanted = {n: s for n, s in stack.functions.items() if n in self.functions or n in new}
        for name in sorted(set(self.functions) - set(stack.functions)):
            self.functions.pop(name).stop()
            self.secret_store.unmount(name)
            report["stopped"].append(name)
        self.stack.functions.update({n: stack.functions[n] for n in new})
        self.stack.copy = stack.copy
        started = []
        for name, spec in wanted.items():
            env = self.function_env(spec)  # also refreshes its secrets' copies, restarted or not
            staged = build_context(stack, spec, self.build / f"{name}.staged")
            running = self.functions.get(name)
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
            shutil.rmtree(self.build / name, ignore_errors=True)
            staged.rename(self.build / name)
            fn = self.functions[name] = self._new(spec, self.build / name, env)
            try:
                fn.start()
            except OSError as exc:  # e.g. its log cannot be opened: this one failed, the others go on
                report["failed"][name] = f"could not start: {exc}"
                continue
            started.append((fn, "restarted" if running is not None else "started"))
        for fn, kind in started:
            try:
                fn.wait_ready()
                report[kind].append(fn.spec.name)
            except (TimeoutError, RuntimeError) as exc:
                report["failed"][fn.spec.name] = str(exc)

    # -- what the state file and the metrics show -------------------------------------------------
    def state(self) -> dict:
        return {
            n: {
                "url": f"http://127.0.0.1:{f.port}" if f.process and f.process.poll() is None else None,  # replica 0's
                "pid": f.process.pid if f.process else None,
                "replicas": f.wanted,
                "available_replicas": f.available(),
                "liveness_failures": max((r.probe_failures for r in f.replicas), default=0),
                "log": str(f.log_path),
                **f.restarts.health(f.log_path),
            }
            for n, f in self.functions.items()
        }

    def records(self) -> list[dict | None]:
        """Every replica's process, with its start time."""
        return [record for f in self.functions.values() for record in f.records()]

    def ports(self) -> dict[int, str]:
        return {r.port: f"function {r.name}" for fn in self.functions.values() for r in fn.replicas if r.port}

    def restart_counts(self) -> dict[str, int]:
        return {name: fn.restarts.count for name, fn in self.functions.items()}

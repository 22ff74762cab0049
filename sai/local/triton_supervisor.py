"""The Triton supervisor: owns the tritonserver process the platform runs (none with --triton-url),
keeps it alive (restarts with back-off, a liveness probe that kills a hung server) and knows which
models it has loaded, loading and unloading them through Triton's model-control API
(model_control.py).

Models: with `sai up --only` Triton loads just the models the started functions call; the rest
are `left_out` until a function that needs them is deployed (`load_for`) or a reload finds a
function that calls them. `loaded` maps each loaded model to the fingerprint of its folder when it
was loaded, so `reload` loads new and changed models and unloads removed ones. A restarted Triton
loads what is loaded now. `ensure_loaded` and `unload` are the pieces on-demand loading builds on.

Everything here is called under the platform's lock (platform.py says who owns what).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sai.local import model_control
from sai.local.model_control import model_fingerprints
from sai.local.model_deps import needed_models
from sai.local.platform_settings import Settings
from sai.local.processes import restart_when_due
from sai.local.stack import Function
from sai.local.triton_server import TritonServer

log = logging.getLogger(__name__)

EXTERNAL = "Triton is not started by this platform (--triton-url): reload it yourself"


class TritonSupervisor:
    def __init__(self, settings: Settings, models: list[str] | None = None):
        """`models`: those to load at start (None: every model in the repository)."""
        self.settings = settings
        self.server: TritonServer | None = None
        if settings.triton_url is None:
            self.server = TritonServer(
                model_repository=settings.model_repository,
                work_dir=settings.state_dir / "triton",
                http_port=settings.triton_http_port,
                grpc_port=settings.triton_grpc_port,
                metrics_port=settings.triton_metrics_port,
                model_control=True,  # model load/unload for this supervisor, on a private socket
                log_verbose=settings.triton_log_verbose,
                models=models,
            )
        self.loaded: dict[str, str] = {}  # model -> fingerprint of its folder when Triton loaded it
        self.left_out: set[str] = set()  # in the repository at start, not loaded (--only)
        self.wanted = True  # False while stopped on purpose (stop), so not restarted
        self.restarts = settings.restarts()
        self.probe_failures = 0  # liveness probes failed in a row

    @property
    def url(self) -> str:
        """host:port of Triton's HTTP endpoint, ours or the --triton-url one."""
        if self.server is not None:
            return self.server.url
        assert self.settings.triton_url is not None
        return self.settings.triton_url

    # -- the process ---------------------------------------------------------------------------------
    def launch(self) -> dict[str, str] | None:
        """Start Triton (if this platform runs one) without waiting; the fingerprints of the models
        it loads, for `await_ready`."""
        self.wanted = True
        if self.server is None:
            return None
        every = model_fingerprints(self.settings.model_repository)
        # What this Triton loads, so that reload compares just those; the rest (--only) stays
        # out until a function calls it, while models new to the repository load on reload.
        models = self.server.models
        fingerprints = {n: f for n, f in every.items() if models is None or n in models}
        self.left_out = set(every) - set(fingerprints)
        self.server.start()
        return fingerprints

    def await_ready(self, fingerprints: dict[str, str] | None, timeout: float = 180.0) -> None:
        if self.server is None or fingerprints is None:
            return
        self.server.wait_ready(timeout)
        self.loaded = fingerprints
        log.info("triton ready at %s", self.server.url)

    def start(self, timeout: float = 180.0) -> None:
        self.await_ready(self.launch(), timeout)

    def stop(self) -> None:
        """Stop Triton on purpose: the supervisor leaves it stopped until `start`."""
        self.wanted = False
        if self.server is not None:
            self.server.stop()

    def supervise(self) -> None:
        """Restart a dead Triton with back-off; kill one that fails `liveness_failures` probes in a
        row (a hung server ignores SIGTERM), so that it is restarted."""
        server = self.server
        if server is None or not self.wanted:
            return
        if server.running() and self.restarts.next_at is None:
            if server.live():
                self.probe_failures = 0
                return
            self.probe_failures += 1
            log.warning("triton liveness probe failed (%d in a row)", self.probe_failures)
            if self.probe_failures < self.settings.liveness_failures:
                return
            log.error("triton hangs: %d liveness probes failed in a row; killing it", self.probe_failures)
            server.kill()

        def restart() -> None:
            server.stop()  # its backend stubs too
            self.probe_failures = 0
            self.start()

        restart_when_due("tritonserver", server.process, self.restarts, server.log_path, restart)

    # -- models --------------------------------------------------------------------------------------
    def ensure_loaded(self, names: set[str]) -> dict[str, str]:
        """Load those of `names` Triton has not loaded, each run once on zeros; {model: why} for
        those that failed (they stay unloaded)."""
        server = self.server
        missing = sorted(set(names) - set(self.loaded))
        if server is None or not server.model_control or not missing:
            return {}
        now, failed = model_fingerprints(self.settings.model_repository), {}
        for name in missing:
            if error := model_control.load_checked(server, name, new=True):
                failed[name] = error
                continue
            self.loaded[name] = now.get(name, "")
            self.left_out.discard(name)
        self._remember()
        return failed

    def unload(self, names: set[str]) -> dict[str, str]:
        """Unload `names` from Triton; {model: why} for those it refused."""
        server, failed = self.server, {}
        if server is None or not server.model_control:
            return {}
        for name in sorted(set(names) & set(self.loaded)):
            if (error := model_control.call(server, name, "unload")) is None:
                del self.loaded[name]
            else:
                failed[name] = error
        self._remember()
        return failed

    def load_for(self, specs: list[Function]) -> dict[str, str]:
        """Load the models `specs` call that were left out at start (a function deployed through
        the API after `sai up --only`); {model: why} for those that failed."""
        needed = needed_models(specs, self.settings.model_repository)
        return self.ensure_loaded(self.left_out if needed is None else self.left_out & set(needed))

    def reload(self, upcoming: Callable[[], list[Function] | None]) -> dict:
        """`sai reload`'s models: load new and changed ones (each run once), unload those removed
        from the repository. Models left out at start stay out unless a function that will run
        after the reload calls them (`upcoming()`: those functions, None when stack.yml is
        unreadable). The report's part: loaded, reloaded, unloaded, failed {model: why}."""
        report: dict = {"loaded": [], "reloaded": [], "unloaded": [], "failed": {}}
        server = self.server
        if server is None or not server.model_control:
            return {**report, "skipped": EXTERNAL}
        try:
            self._reload(server, report, upcoming)
        except Exception as exc:  # noqa: BLE001 - a reload never stops the platform: it reports
            log.exception("reload: models")
            report["failed"]["model_repository"] = repr(exc)
        return report

    def _reload(self, server: TritonServer, report: dict, upcoming: Callable[[], list[Function] | None]) -> None:
        now = model_fingerprints(self.settings.model_repository)
        wanted = self._wanted(now, upcoming)
        for name in sorted(now):
            if self.loaded.get(name) == now[name] or name not in wanted:
                continue
            error = model_control.load_checked(server, name, new=name not in self.loaded)
            if error is None:
                report["reloaded" if name in self.loaded else "loaded"].append(name)
                self.loaded[name] = now[name]
            else:
                report["failed"][name] = error
        for name in sorted(set(self.loaded) - set(now)):
            if (error := model_control.call(server, name, "unload")) is None:
                report["unloaded"].append(name)
                del self.loaded[name]
            else:
                report["failed"][name] = error
        self.left_out -= set(self.loaded)
        self._remember()

    def _wanted(self, now: dict[str, str], upcoming: Callable[[], list[Function] | None]) -> set[str]:
        if not self.left_out:
            return set(now)
        specs = upcoming()
        if specs is None:
            return set(now) - self.left_out
        needed = needed_models(specs, self.settings.model_repository)
        return set(now) if needed is None else set(now) - (self.left_out - set(needed))

    def _remember(self) -> None:
        """A restarted Triton loads what is loaded now."""
        if self.server is not None and self.server.models is not None:
            self.server.models = sorted(self.loaded)

    # -- what the state file shows -----------------------------------------------------------------
    def state(self) -> dict:
        server = self.server
        return {
            "url": self.url,
            "pid": server.process.pid if server and server.process else None,
            "metrics": f"http://127.0.0.1:{self.settings.triton_metrics_port}/metrics" if server else None,
            "log": str(server.log_path) if server else None,
            "liveness_failures": self.probe_failures,
            **(self.restarts.health(server.log_path) if server else {}),
        }

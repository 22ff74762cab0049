"""The triggers' owner in the platform: starts the broker when something needs it, runs the
connectors on their own event loop thread, and reports their state.

Like OpenFaaS's connectors it knows functions only through the gateway: every `rebuild_s` it
reads GET /system/functions and schedules the cron functions, subscribes the topic functions, and
relays the database watches (`sai db watch`) read from the state folder. So a function deployed,
updated or removed through the API is picked up (or dropped) within `rebuild_s`.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors

from sai.local.processes import Restarts
from sai.local.triggers import annotations as bindings
from sai.local.triggers import cron, postgres, topics
from sai.local.triggers.invoke import Gateway

log = logging.getLogger(__name__)

CRON_CONNECTOR = "cron-connector"  # the X-Connector cron-connector 0.7.0's calls carry


@dataclass
class TriggerSettings:
    nats_url: str | None = None  # use this NATS (with JetStream) instead of starting one
    nats_port: int = 4222
    rebuild_s: float = 2.0  # how often the function list is read (nats-connector: 5 s, cron-connector: 10 s)
    ack_wait_s: float = 30.0  # a message whose call shows no progress for this long is sent again
    max_attempts: int = 5  # calls of one message answered 429/5xx before it is given up
    retry_first_s: float = 1.0  # back-off between those calls: 1, 2, 4 ... s
    retry_max_s: float = 30.0
    max_age_s: float = 7 * 24 * 3600.0  # messages kept this long; idle subscriptions expire after it
    db_poll_s: float = 5.0  # the relay looks at the outbox this often even without a notification


def trigger_lines(status: dict) -> list[str]:
    """`sai status`'s lines for the triggers (from `Triggers.status()` in the state file)."""
    lines = []
    for name, run in (status.get("cron") or {}).items():
        last = f", last run {run['last_run']} -> {run['last_status']}" if run.get("last_run") else ""
        lines.append(f"cron     {name} [{run['schedule']}] next {run['next']}{last}")
    messages = status.get("messages") or {}
    for topic, functions in (messages.get("topics") or {}).items():
        lines.append(f"topic    {topic} -> {', '.join(functions)}")
    if messages:
        counts = ", ".join(f"{messages[k]} {k}" for k in ("delivered", "retried", "failed"))
        lines.append(f"messages {counts}" + (f"; last failure: {messages['last_error']}" if messages.get("last_error") else ""))
    for watch in status.get("db_watches") or []:
        error = f"; last error: {watch['last_error']}" if watch.get("last_error") else ""
        lines.append(f"database changes -> topic {watch['topic']}: {watch['relayed']} relayed{error}")
    if status.get("nats_error"):
        lines.append(f"topics off: {status['nats_error']}")
    return lines


class Triggers:
    def __init__(
        self,
        settings: TriggerSettings,
        state_dir: pathlib.Path,
        gateway_url: str,
        credentials: tuple[str, str] | None,
        auth_functions: bool,
        upstream_timeout_s: float,
    ):
        self.settings, self.state_dir = settings, state_dir
        self.gateway = Gateway(gateway_url, credentials, upstream_timeout_s + 5, auth_functions)
        self.server: topics.NatsServer | None = None
        self.server_restarts = Restarts()
        self.nats_error: str | None = None  # why topics are off
        self.broker_wanted = False  # set by a rebuild that found topics; the supervisor starts it
        self.topics: topics.Topics | None = None
        self.scheduler = cron.Scheduler()
        self.cron_runs: dict[str, dict] = {}  # function -> its last run's outcome
        self.relays: dict[tuple[str, frozenset], tuple[postgres.Relay, asyncio.Task]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle (called by the platform's supervisor, main thread) -----------------------------------
    def start(self, functions: dict[str, dict[str, str]]) -> None:
        """Start the broker (when a function has a topic or a database is watched, and no URL is
        given) and the connectors; returns once the first rebuild has subscribed and scheduled
        what the functions ask for. `functions`: name -> annotations of those about to run, whose
        bad trigger annotations stop the start (stack.yml's; the API refuses them at deploy)."""
        bad = []
        for name, notes in functions.items():
            try:
                bindings.check_annotations(notes)
            except bindings.AnnotationError as exc:
                bad.append(f"function {name}: {exc}")
        if bad:
            raise ValueError("; ".join(bad))
        if any(bindings.topics(n) for n in functions.values()) or postgres.load_watches(self.state_dir):
            self._start_server()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._startup())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
            started.set()
            if not failure:
                self._loop.run_forever()
            self._loop.run_until_complete(self._shutdown())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="triggers", daemon=True)
        self._thread.start()
        started.wait(60)
        if failure:
            raise RuntimeError(f"triggers could not start: {failure[0]}")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)
        if self.server is not None:
            self.server.stop()

    def supervise(self) -> None:
        """Start the broker once something needs it; restart it when it died (with back-off)."""
        if self.broker_wanted and self.server is None and self.nats_error is None:
            self._start_server()
        server = self.server
        if server is None or server.running():
            return
        if self.server_restarts.died():
            log.error("nats-server died (exit %s); restarting", server.process.poll() if server.process else None)
        if self.server_restarts.due():
            self.server_restarts.restarted()
            try:
                server.start()
            except topics.NatsUnavailable as exc:
                log.error("nats-server restart failed: %s", exc)

    def _start_server(self) -> None:
        if self.settings.nats_url:
            return
        self.server = topics.NatsServer(self.state_dir / "nats", self.settings.nats_port, self.state_dir / "logs" / "nats.log")
        try:
            self.server.start()
        except topics.NatsUnavailable as exc:
            self.server, self.nats_error = None, str(exc)
            log.warning("message topics are off: %s", exc)

    @property
    def nats_url(self) -> str | None:
        return self.settings.nats_url or (self.server.url if self.server is not None else None)

    # -- state, for `sai status` --------------------------------------------------------------------
    def status(self) -> dict:
        """Read by the supervisor's thread while the triggers' loop changes things: each container
        is copied first (list()/dict() of a dict run without a thread switch), then read."""
        entries, runs, relays = list(self.scheduler.entries.values()), dict(self.cron_runs), list(self.relays.items())
        return {
            "nats": self.nats_url,
            "nats_error": self.nats_error,
            "nats_token": str(topics.NatsServer.token_path(self.server.work_dir)) if self.server else None,
            "messages": self.topics.status() if self.topics else None,
            "cron": {
                e.function: {"schedule": e.spec, "next": e.next.isoformat() if e.next else None, **runs.get(e.function, {})}
                for e in entries
            },
            "db_watches": [
                {"topic": t, "relayed": relay.relayed, "last_error": relay.last_error}
                for (_, ts), (relay, _) in relays
                for t in sorted(ts)
            ],
        }

    def records(self) -> list[dict | None]:
        return [self.server.record] if self.server else []

    # -- the connectors (the triggers thread's event loop) --------------------------------------------
    async def _startup(self) -> None:
        await self.rebuild()
        self._spawn(self._rebuild_loop(), "triggers-rebuild")
        self._spawn(self._cron_loop(), "triggers-cron")

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for _, task in self.relays.values():
            task.cancel()
        await asyncio.gather(*self._tasks, *(t for _, t in self.relays.values()), return_exceptions=True)
        if self.topics is not None:
            await self.topics.stop()
            await self.topics.nc.close()
        await self.gateway.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _rebuild_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.rebuild_s)
            try:
                await self.rebuild()
            except Exception as exc:  # noqa: BLE001 - keep the last good state; try again next round
                log.warning("triggers: rebuild failed: %s", exc)

    async def rebuild(self) -> None:
        """Bring schedules, subscriptions and relays in line with the functions and watches."""
        found = await self.gateway.annotations()
        wanted_cron, wanted_topics = {}, {}
        for name, notes in found.items():
            try:
                bindings.check_annotations(notes)
            except bindings.AnnotationError as exc:  # what the connectors do: skip it, say why
                log.warning("function %s: %s; not triggered", name, exc)
                continue
            if (spec := bindings.schedule(notes)) is not None:
                wanted_cron[name] = spec
            if names := bindings.topics(notes):
                wanted_topics[name] = names
        added, removed = self.scheduler.sync(wanted_cron, datetime.now(UTC))
        for name in removed:
            log.info("cron: %s unscheduled", name)
        for name in added:
            entry = self.scheduler.entries[name]
            log.info("cron: %s scheduled [%s], next run %s", name, entry.spec, entry.next)
        watches = postgres.load_watches(self.state_dir)
        self.broker_wanted = bool(wanted_topics or watches)
        if self.topics is None and self.broker_wanted and self.nats_url:
            await self._connect()
        if self.topics is None:
            return  # no broker (yet, or not installed: nats_error says why)
        await self.topics.sync(wanted_topics, {w.topic for w in watches})
        self._sync_relays(watches)

    async def _connect(self) -> None:
        token = self.server.token() if self.server else None
        assert self.nats_url is not None  # set when topics are wanted
        nc = await topics.connect(self.nats_url, token, "sai-triggers")
        s = self.settings
        self.topics = topics.Topics(
            nc,
            self.gateway,
            ack_wait_s=s.ack_wait_s,
            max_attempts=s.max_attempts,
            retry_first_s=s.retry_first_s,
            retry_max_s=s.retry_max_s,
            max_age_s=s.max_age_s,
        )

    def _sync_relays(self, watches: list[postgres.Watch]) -> None:
        by_db: dict[str, set[str]] = {}
        for w in watches:
            by_db.setdefault(w.dsn, set()).add(w.topic)
        wanted = {(dsn, frozenset(ts)) for dsn, ts in by_db.items()}
        for key in set(self.relays) - wanted:
            self.relays.pop(key)[1].cancel()
        for dsn, ts in wanted - set(self.relays):
            relay = postgres.Relay(dsn, set(ts), self._publish, self.settings.db_poll_s)
            self.relays[dsn, ts] = (relay, asyncio.create_task(relay.run(), name="db-relay"))
            log.info("database relay for topic(s) %s started", ", ".join(sorted(ts)))

    async def _publish(self, topic: str, data: bytes, msg_id: str) -> None:
        try:
            assert self.topics is not None  # relays start once the broker is connected
            await topics.publish(self.topics.js, topic, data, msg_id)
        except nats.errors.MaxPayloadError as exc:
            raise postgres.Refused(f"message larger than the broker takes ({exc})") from None
        except nats.js.errors.NoStreamResponseError:
            raise RuntimeError(f"no stream holds topic {topic!r} yet") from None

    async def _cron_loop(self) -> None:
        while True:
            wait = self.scheduler.seconds_to_next(datetime.now(UTC))
            await asyncio.sleep(min(wait if wait is not None else 1.0, 1.0))
            for entry in self.scheduler.due(datetime.now(UTC)):
                # Each run on its own, so a run still going when the next is due overlaps it (robfig/cron).
                self._spawn(self._cron_run(entry.function, entry.spec), f"cron-{entry.function}")

    async def _cron_run(self, function: str, spec: str) -> None:
        started = datetime.now(UTC)
        call_id = f"cron-{function}-{started.strftime('%Y%m%dT%H%M%S')}"
        headers = {"X-Topic": bindings.CRON_TOPIC, "X-Connector": CRON_CONNECTOR, "X-Call-Id": call_id}
        outcome = await self.gateway.invoke(function, b"", headers)
        self.cron_runs[function] = {"last_run": started.isoformat(), "last_status": outcome.status}
        # cron-connector logs each response and does not retry: the next run is the retry.
        level = logging.INFO if outcome.ok else logging.ERROR
        log.log(level, "cron: %s [%s] (call %s): %s", function, spec, call_id, outcome.describe())

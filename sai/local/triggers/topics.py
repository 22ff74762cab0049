"""Message topics on NATS JetStream: the broker process and the connector that turns each message
into a function call.

nats-connector 0.3.0 (nats/broker.go) subscribes with core NATS: a message published while it
is down, or whose call fails, is gone (its README points to JetStream for durability). Here
messages go through JetStream instead, for at-least-once delivery:

- one stream, `SAI_TOPICS`, holds every topic a function subscribes to (and every topic a
  database watch publishes to), on disk under `<state>/nats/`. A publish is answered once the
  message is written: nats-server v2.9.10 stores stream messages with AsyncFlush off
  (server/stream.go), so they survive a kill -9 of the server (not of the machine: it syncs to
  disk every 2 minutes);
- one durable pull consumer per function and topic, acknowledged only when the call is over: a
  message in flight when the platform dies is delivered again after the restart;
- each message is one POST through the gateway (invoke.py), one at a time per function and topic
  (as nats.go calls a subscription's handler serially); a 2xx is acknowledged, a 429/5xx or no
  answer is retried with back-off (nak with a delay) up to `max_attempts`, then given up; any
  other answer is final (the message itself is wrong). Each outcome is logged with the answer.
  Under normal operation each message is delivered once; after a crash, at least once.

A function receives the messages published after it subscribed; consumers of a function that is
gone are left to expire (`inactive_threshold`), so a function that comes back within that time
gets what was published meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import pathlib
import secrets
import shutil
import subprocess
from collections import Counter

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig

from sai.local.processes import identity, listens_on, spawn, tail, terminate_group, wait_until
from sai.local.triggers.invoke import Gateway, Outcome, backoff_s

log = logging.getLogger(__name__)

STREAM = "SAI_TOPICS"
CONNECTOR = "connector-sdk"  # the X-Connector nats-connector's calls carry (connector-sdk v0.6.7 invoker.go)
BINARY_DIRS = ("/usr/sbin", "/usr/bin")  # Debian's nats-server is in /usr/sbin, not on a user's PATH


class NatsUnavailable(RuntimeError):
    """The broker cannot be had: not installed, or it would not start."""


def nats_binary() -> str:
    found = shutil.which("nats-server") or shutil.which("nats-server", path=os.pathsep.join(BINARY_DIRS))
    if not found:
        raise NatsUnavailable("nats-server is not installed (Debian: apt-get install nats-server)")
    return found


class NatsServer:
    """nats-server with JetStream on 127.0.0.1:`port`, its store under `work_dir`, a token kept
    in `work_dir/token` (0600) that clients (the connector, `sai publish`) present."""

    def __init__(self, work_dir: pathlib.Path, port: int, log_path: pathlib.Path):
        self.work_dir, self.port, self.log_path = work_dir, port, log_path
        self.process: subprocess.Popen | None = None
        self.record: dict | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @staticmethod
    def token_path(work_dir: pathlib.Path) -> pathlib.Path:
        return work_dir / "token"

    def token(self) -> str:
        path = self.token_path(self.work_dir)
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
        return path.read_text().strip()

    def start(self, timeout: float = 15.0) -> None:
        binary = nats_binary()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        conf = self.work_dir / "nats.conf"
        conf.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            "server_name: sai\n"
            f'authorization {{ token: "{self.token()}" }}\n'
            f'jetstream {{ store_dir: "{self.work_dir / "jetstream"}", max_memory_store: 64MB, max_file_store: 1GB }}\n'
        )
        conf.chmod(0o600)
        self.process = spawn([binary, "-c", str(conf)], self.log_path)
        self.record = identity(self.process.pid)

        def exited() -> str | None:
            if self.running():
                return None
            return f"nats-server exited (port {self.port} in use?); see {self.log_path}:\n{tail(self.log_path, 10)}"

        try:
            ready = wait_until(
                lambda: self.process is not None and listens_on(self.process.pid, self.port), timeout, 0.05, exited
            )
        except RuntimeError as exc:
            raise NatsUnavailable(str(exc)) from None
        if not ready:
            self.stop()
            raise NatsUnavailable(f"nats-server not listening on port {self.port} after {timeout:.0f}s; see {self.log_path}")
        log.info("nats-server (JetStream) listening on %s", self.url)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None:
            terminate_group(self.process, timeout=5)


async def connect(url: str, token: str | None, name: str) -> nats.NATS:
    """A client that reconnects for ever (the broker may restart under it)."""
    options = {"token": token} if token else {}
    return await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5, **options)


async def publish(js: JetStreamContext, topic: str, data: bytes, msg_id: str | None = None) -> int:
    """Store one message on `topic`; its stream sequence. NoStreamResponseError when no stream
    holds the topic (nobody subscribes to it). `msg_id`: JetStream drops a second message with the
    same id within its duplicate window (2 minutes), so a re-sent message is stored once."""
    ack = await js.publish(topic, data, headers={"Nats-Msg-Id": msg_id} if msg_id else None)
    return ack.seq


def consumer_name(function: str, topic: str) -> str:
    """A durable name for a function's subscription to a topic ('.' is not allowed in one)."""
    digest = hashlib.sha1(topic.encode()).hexdigest()[:8]
    return f"{function}_{topic.replace('.', '_')}_{digest}"


class Topics:
    """The connector: keeps the stream's subjects and one pull loop per (function, topic) in line
    with what the functions subscribe to (`sync`), and delivers each message (`deliver`)."""

    def __init__(
        self,
        nc: nats.NATS,
        gateway: Gateway,
        *,
        ack_wait_s: float,
        max_attempts: int,
        retry_first_s: float,
        retry_max_s: float,
        max_age_s: float,
    ):
        self.nc, self.js, self.gateway = nc, nc.jetstream(), gateway
        self.ack_wait_s, self.max_attempts = ack_wait_s, max_attempts
        self.retry_first_s, self.retry_max_s, self.max_age_s = retry_first_s, retry_max_s, max_age_s
        self.subjects: list[str] = []
        self.loops: dict[tuple[str, str], asyncio.Task] = {}
        self.counts: Counter = Counter()  # delivered, retried, failed
        self.last_error: str | None = None

    def status(self) -> dict:
        pairs: dict[str, list[str]] = {}
        for function, topic in sorted(self.loops):
            pairs.setdefault(topic, []).append(function)
        return {"topics": pairs, **{k: self.counts[k] for k in ("delivered", "retried", "failed")}, "last_error": self.last_error}

    async def sync(self, wanted: dict[str, list[str]], published: set[str]) -> None:
        """Subscribe each function (name -> its topics) and hold the topics of `published` too."""
        subjects = sorted({t for topics in wanted.values() for t in topics} | published)
        if subjects and subjects != self.subjects:
            await self._stream(subjects)
            self.subjects = subjects
        pairs = {(f, t) for f, topics in wanted.items() for t in topics}
        for pair in set(self.loops) - pairs:
            self.loops.pop(pair).cancel()
            log.info("function %s no longer subscribes to topic %s", *pair)
        for function, topic in sorted(pairs - set(self.loops)):
            sub = await self.js.pull_subscribe(
                topic,
                durable=consumer_name(function, topic),
                stream=STREAM,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self.ack_wait_s,
                    deliver_policy=DeliverPolicy.NEW,
                    max_deliver=-1,  # our own bound (max_attempts) applies to failed calls only
                    inactive_threshold=self.max_age_s,
                ),
            )
            self.loops[function, topic] = asyncio.create_task(self._pull(function, topic, sub), name=f"topic-{topic}")
            log.info("function %s subscribes to topic %s", function, topic)

    async def _stream(self, subjects: list[str]) -> None:
        config = StreamConfig(
            name=STREAM,
            subjects=subjects,
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            max_age=self.max_age_s,
            duplicate_window=120.0,
        )
        try:
            await self.js.stream_info(STREAM)
        except nats.js.errors.NotFoundError:
            await self.js.add_stream(config)
        else:
            await self.js.update_stream(config)
        log.info("topics: %s", ", ".join(subjects))

    async def stop(self) -> None:
        for task in self.loops.values():
            task.cancel()
        await asyncio.gather(*self.loops.values(), return_exceptions=True)
        self.loops.clear()

    async def _pull(self, function: str, topic: str, sub: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                msgs = await sub.fetch(1, timeout=5)
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.Error, OSError) as exc:  # the broker restarting: the client reconnects
                log.debug("topic %s: fetch for %s failed: %s", topic, function, exc)
                await asyncio.sleep(1)
                continue
            for msg in msgs:
                await self.deliver(function, topic, msg)

    async def deliver(self, function: str, topic: str, msg: Msg) -> None:
        meta = msg.metadata
        attempt, seq = meta.num_delivered, meta.sequence.stream
        call_id = f"topic-{topic}-{seq}-{function}"
        headers = {"X-Topic": topic, "X-Connector": CONNECTOR, "X-Call-Id": call_id}
        progress = asyncio.create_task(self._in_progress(msg))
        try:
            outcome = await self.gateway.invoke(function, msg.data, headers)
        finally:
            progress.cancel()
        where = f"topic {topic} message {seq} -> {function} (call {call_id}, attempt {attempt})"
        try:
            await self._settle(where, outcome, msg, attempt)
        except nats.errors.Error as exc:  # not acknowledged: JetStream sends it again after ack_wait
            log.warning("%s: could not acknowledge (%s); it will be delivered again", where, exc)

    async def _settle(self, where: str, outcome: Outcome, msg: Msg, attempt: int) -> None:
        if outcome.ok:
            await msg.ack()
            self.counts["delivered"] += 1
            log.info("%s: %s", where, outcome.describe())
        elif outcome.retryable and attempt < self.max_attempts:
            delay = backoff_s(attempt, self.retry_first_s, self.retry_max_s)
            await msg.nak(delay=delay)
            self.counts["retried"] += 1
            log.warning("%s: %s; retrying in %.1f s", where, outcome.describe(), delay)
        else:
            await msg.term()
            self.counts["failed"] += 1
            self.last_error = f"{where}: {outcome.describe()}"
            why = f"giving up after {attempt} attempts" if outcome.retryable else "not retried (the message is refused)"
            log.error("%s: %s; %s", where, outcome.describe(), why)

    async def _in_progress(self, msg: Msg) -> None:
        """Tell JetStream the call goes on, so a call longer than ack_wait is not sent twice."""
        while True:
            await asyncio.sleep(self.ack_wait_s / 3)
            try:
                await msg.in_progress()
            except nats.errors.Error:
                pass

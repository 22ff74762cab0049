"""Database changes as messages: rows inserted (or updated, deleted) in a PostgreSQL table become
messages on a topic, so the functions subscribed to it run once per row.

Mechanism: a transactional outbox, filled by a trigger and drained by a relay.

- `sai db watch DSN TABLE --topic T` installs (idempotently) a table `sai.outbox`, a trigger
  function `sai.capture()` and, on TABLE, a row trigger that writes one outbox row per change in
  the same transaction as the change, with the message
  `{"table", "schema", "op": "INSERT"|"UPDATE"|"DELETE", "row": {...}, "old": {...} (UPDATE only)}`
  (the row as `to_jsonb` gives it), then `pg_notify('sai_outbox', T)` as a wake-up call. The
  watch is recorded in `<state>/triggers/db-watches.json` (0600: the DSN may hold a password).
- The platform runs one `Relay` per database: it LISTENs, and on each notification (or every
  `poll_s`, so a missed one costs a delay, never a message) takes the oldest outbox rows
  (FOR UPDATE SKIP LOCKED: two relays never take the same row), publishes each to JetStream with
  the row's uuid as Nats-Msg-Id, and deletes it once the broker has stored it. A crash between
  the two re-sends the row, and JetStream drops the copy (duplicate window 2 minutes).

Why not NOTIFY alone: a notification sent while nobody listens is lost, and its payload is
limited to 8000 bytes. Why not logical decoding: it needs `wal_level = logical` (a server
restart), a replication role and an output plugin, and its slot keeps WAL without bound while
the relay is down. The outbox needs none of that, a rolled-back change never becomes a message,
and a change made while the platform is down waits in the table until the relay runs again. Its
cost is one extra row write per change, in the writer's transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pathlib
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

CHANNEL = "sai_outbox"
OPERATIONS = ("insert", "update", "delete")
BATCH = 100  # outbox rows per relay transaction

SETUP = """
CREATE SCHEMA IF NOT EXISTS sai;
CREATE TABLE IF NOT EXISTS sai.outbox (
    seq bigserial PRIMARY KEY,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    topic text NOT NULL,
    payload jsonb NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    error text  -- set when the broker refuses the message for good (it stays here to inspect)
);
CREATE OR REPLACE FUNCTION sai.capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    message jsonb := jsonb_build_object('table', TG_TABLE_NAME, 'schema', TG_TABLE_SCHEMA, 'op', TG_OP);
BEGIN
    IF TG_OP = 'DELETE' THEN
        message := message || jsonb_build_object('row', to_jsonb(OLD));
    ELSE
        message := message || jsonb_build_object('row', to_jsonb(NEW));
    END IF;
    IF TG_OP = 'UPDATE' THEN
        message := message || jsonb_build_object('old', to_jsonb(OLD));
    END IF;
    INSERT INTO sai.outbox (topic, payload) VALUES (TG_ARGV[0], message);
    PERFORM pg_notify('sai_outbox', TG_ARGV[0]);
    RETURN NULL;
END $$;
"""


class WatchError(ValueError):
    """A watch that cannot be installed (bad table name, unknown operation)."""


@dataclass(frozen=True)
class Watch:
    dsn: str
    table: str  # "name" or "schema.name"
    topic: str
    ops: tuple[str, ...] = ("insert",)

    def table_sql(self) -> sql.Identifier:
        parts = self.table.split(".")
        if len(parts) > 2 or not all(parts):
            raise WatchError(f"table {self.table!r}: give NAME or SCHEMA.NAME")
        return sql.Identifier(*parts)

    def trigger_sql(self) -> sql.Identifier:
        return sql.Identifier(f"sai_{self.topic}")


def redacted(dsn: str) -> str:
    """The DSN without its password, for printing."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(unparsable DSN)"
    return psycopg.conninfo.make_conninfo("", **{k: v for k, v in params.items() if k != "password"})


def check_ops(ops: list[str]) -> tuple[str, ...]:
    wrong = [op for op in ops if op not in OPERATIONS]
    if wrong or not ops:
        raise WatchError(f"operations must be among {', '.join(OPERATIONS)}, got {', '.join(wrong) or 'none'}")
    return tuple(dict.fromkeys(ops))


def install(watch: Watch) -> None:
    """The outbox, the capture function and the table's trigger for `watch` (idempotent)."""
    events = sql.SQL(" OR ").join(sql.SQL(op.upper()) for op in watch.ops)
    with psycopg.connect(watch.dsn) as conn:  # one transaction: all of it or nothing
        conn.execute(SETUP)
        conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(watch.trigger_sql(), watch.table_sql()))
        conn.execute(
            sql.SQL("CREATE TRIGGER {} AFTER {} ON {} FOR EACH ROW EXECUTE FUNCTION sai.capture({})").format(
                watch.trigger_sql(), events, watch.table_sql(), sql.Literal(watch.topic)
            )
        )


def uninstall(watch: Watch) -> None:
    """Drop the table's trigger (the outbox stays: other watches may use it)."""
    with psycopg.connect(watch.dsn) as conn:
        conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(watch.trigger_sql(), watch.table_sql()))


# -- the registry of watches ------------------------------------------------------------------------
def registry_path(state_dir: pathlib.Path) -> pathlib.Path:
    return state_dir / "triggers" / "db-watches.json"


def load_watches(state_dir: pathlib.Path) -> list[Watch]:
    try:
        doc = json.loads(registry_path(state_dir).read_text())
    except FileNotFoundError:
        return []
    return [Watch(w["dsn"], w["table"], w["topic"], tuple(w["ops"])) for w in doc]


def save_watches(state_dir: pathlib.Path, watches: list[Watch]) -> None:
    path = registry_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(w) for w in watches], indent=1))
    tmp.chmod(0o600)
    os.replace(tmp, path)


# -- the relay ------------------------------------------------------------------------------------
class Refused(Exception):
    """The broker will never take this message (too large): it is marked, not retried."""


class RelayStalled(Exception):
    """Publishing failed (the broker is away): retried after a back-off."""


Publish = Callable[[str, bytes, str], Awaitable[None]]  # (topic, message, message id)


class Relay:
    """Moves one database's outbox rows for `topics` to the broker, oldest first, until cancelled;
    reconnects (with back-off) when the database or the broker goes away."""

    def __init__(self, dsn: str, topics: set[str], publish: Publish, poll_s: float = 5.0):
        self.dsn, self.topics, self.publish, self.poll_s = dsn, topics, publish, poll_s
        self.relayed = 0
        self.last_error: str | None = None

    async def run(self) -> None:
        delay = 1.0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as listen:
                    await listen.execute(f"LISTEN {CHANNEL}")
                    async with await psycopg.AsyncConnection.connect(self.dsn) as work:
                        while True:
                            while await self.drain(work):
                                delay = 1.0
                            async for _ in listen.notifies(timeout=self.poll_s, stop_after=1):
                                pass
            except (psycopg.Error, OSError, RelayStalled) as exc:
                self.last_error = str(exc)
                log.warning("database relay: %s; retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def drain(self, conn: psycopg.AsyncConnection) -> bool:
        """Relay one batch; True when there may be more."""
        stalled = None
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT seq, id::text, topic, payload::text FROM sai.outbox WHERE error IS NULL AND topic = ANY(%s) "
                "ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED",
                (sorted(self.topics), BATCH),
            )
            rows = await cur.fetchall()
            done = []
            for seq, msg_id, topic, payload in rows:
                try:
                    await self.publish(topic, payload.encode(), msg_id)
                except Refused as exc:
                    log.error("database relay: outbox row %d (topic %s) refused: %s; left in sai.outbox", seq, topic, exc)
                    await conn.execute("UPDATE sai.outbox SET error = %s WHERE seq = %s", (str(exc), seq))
                    continue
                except Exception as exc:  # noqa: BLE001 - the broker is away: keep the rest for later
                    stalled = f"publishing outbox row {seq} to topic {topic} failed: {type(exc).__name__} {exc}"
                    break
                done.append(seq)
            if done:
                await conn.execute("DELETE FROM sai.outbox WHERE seq = ANY(%s)", (done,))
        self.relayed += len(done)
        if done:
            log.info("database relay: %d change(s) published", len(done))
        if stalled:
            raise RelayStalled(stalled)
        return len(rows) == BATCH

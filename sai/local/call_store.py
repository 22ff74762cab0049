"""Where async calls are kept: one SQLite file, written before the gateway answers 202, so that
accepted calls survive a restart (async_calls.py says what each state means). One thread owns the
connection: database calls never block the event loop and never run at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT UNIQUE NOT NULL,
    name           TEXT NOT NULL,
    method         TEXT NOT NULL,
    path_qs        TEXT NOT NULL,
    headers        TEXT NOT NULL,
    body           BLOB,
    callback       TEXT,
    state          TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    status         INTEGER,
    result_headers TEXT,
    result_body    BLOB,
    error          TEXT,
    created        REAL NOT NULL,
    finished       REAL,
    duration       REAL
);
CREATE INDEX IF NOT EXISTS calls_state ON calls(state);
"""


class CallStore:
    def __init__(self, db_path: str, retention_s: float):
        self.db_path, self.retention_s = str(db_path), retention_s  # done/failed calls kept this long
        self._exec = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="async-calls-db")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._exec, call)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the async-call store is not open")
        return self._conn

    async def open(self) -> tuple[list[tuple[str, str | None]], list[tuple[str, str | None]]]:
        """Open (creating) the file; the calls to run and the results to deliver, as (id, callback)."""
        return await self._run(self._open)

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._exec.shutdown(wait=True)
        self._exec = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="async-calls-db")

    async def insert(self, row: dict) -> None:
        await self._run(self._insert, row)

    async def load(self, call_id: str) -> dict | None:
        return await self._run(self._load, call_id)

    async def update(self, call_id: str, expect_state: str, **fields: Any) -> bool:
        """Compare-and-set on `state`: a transition happens once, whoever tries it."""
        return await self._run(self._update, call_id, expect_state, **fields)

    async def shrink(self) -> None:
        await self._run(self._shrink)

    # -- on the store's thread ---------------------------------------------------------------------

    def _open(self) -> tuple[list[tuple[str, str | None]], list[tuple[str, str | None]]]:
        conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        # Bodies are deleted once used; incremental auto-vacuum (set before the WAL, and once by a
        # VACUUM on files made without it) lets the file give that space back.
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("VACUUM")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA journal_size_limit={4 * 1024 * 1024}")  # the WAL shrinks back after checkpoints
        # FULL: a 202 means the call is on disk, even if the machine loses power right after.
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        # Calls interrupted while the function ran (hard kill) run again: at-least-once there.
        conn.execute("UPDATE calls SET state='queued' WHERE state='running'")
        conn.execute(
            "DELETE FROM calls WHERE state IN ('done','failed') AND finished < ?",
            (time.time() - self.retention_s,),
        )
        queued = conn.execute("SELECT id, callback FROM calls WHERE state='queued' ORDER BY seq").fetchall()
        delivering = conn.execute("SELECT id, callback FROM calls WHERE state='delivering' ORDER BY seq").fetchall()
        self._conn = conn
        self._shrink()
        return queued, delivering

    def _shrink(self) -> None:
        """Give freed pages (deleted bodies) back to the file system."""
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        if free > 256:
            self.conn.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _insert(self, row: dict) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.conn.execute(f"INSERT INTO calls ({cols}) VALUES ({marks})", tuple(row.values()))

    def _load(self, call_id: str) -> dict | None:
        cur = self.conn.execute("SELECT * FROM calls WHERE id=?", (call_id,))
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row)) if row else None

    def _update(self, call_id: str, expect_state: str, **fields: Any) -> bool:
        sets = ", ".join(f"{k}=?" for k in fields)
        cur = self.conn.execute(f"UPDATE calls SET {sets} WHERE id=? AND state=?", (*fields.values(), call_id, expect_state))
        return cur.rowcount == 1

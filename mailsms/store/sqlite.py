"""The embedded store: SQLite in WAL mode, one writer thread, group commit.

SQLite allows one writer at a time, and a durable commit (``synchronous = FULL``) costs an
fsync (~125 µs here). Every operation therefore goes to one thread that takes whatever
operations are waiting, runs each in its own SAVEPOINT inside one transaction, commits once
and only then resolves their futures: under load many SMTP sessions share one fsync (~6 µs
each) and no caller hears "done" before its rows are on disk. The event loop never blocks
on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mailsms.errors import StoreError
from mailsms.store.base import Row, SqlStore, Tx
from mailsms.store.queries import migrations

T = TypeVar("T")
log = logging.getLogger("mailsms.store")

_MAX_BATCH = 256


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection, sql: dict[str, str]) -> None:
        self.conn = conn
        self.sql = sql

    def execute(self, name: str, params: dict[str, Any]) -> int:
        return self.conn.execute(self.sql[name], params).rowcount

    def fetchall(self, name: str, params: dict[str, Any]) -> list[Row]:
        cur = self.conn.execute(self.sql[name], params)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


_Job = tuple[Callable[[Tx], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class SqliteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
        return cls(url.removeprefix("sqlite:///"))

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._thread = threading.Thread(
            target=self._main,
            args=(ready, asyncio.get_running_loop()),
            name="mailsms-sqlite",
            daemon=True,
        )
        self._thread.start()
        await ready

    async def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    async def _run(self, fn: Callable[[Tx], T]) -> T:
        if self._thread is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, fut, loop))
        return await fut

    # --- the writer thread -------------------------------------------------------------

    def _main(self, ready: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        try:
            conn = self._connect()
        except Exception as exc:  # reported to open(), which raises it
            loop.call_soon_threadsafe(
                _settle, ready, None, StoreError(f"cannot open {self.path}: {exc}")
            )
            return
        loop.call_soon_threadsafe(_settle, ready, None, None)
        tx = _SqliteTx(conn, self.sql)
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            self._commit_batch(conn, tx, batch)
        conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 10000")
        _migrate(conn)
        return conn

    def _next_batch(self) -> list[_Job] | None:
        first = self._jobs.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < _MAX_BATCH:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._jobs.put(None)  # finish this batch, then stop
                break
            batch.append(job)
        return batch

    def _commit_batch(self, conn: sqlite3.Connection, tx: _SqliteTx, batch: list[_Job]) -> None:
        results: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, _, _ in batch:
                results.append(_in_savepoint(conn, tx, fn))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            err = StoreError(f"commit failed: {exc}")
            results = [(None, err)] * len(batch)
        for (_, fut, loop), (value, error) in zip(batch, results, strict=True):
            loop.call_soon_threadsafe(_settle, fut, value, error)


def _in_savepoint(
    conn: sqlite3.Connection, tx: _SqliteTx, fn: Callable[[Tx], Any]
) -> tuple[Any, BaseException | None]:
    """Run one operation so that its failure undoes only its own writes."""
    conn.execute("SAVEPOINT op")
    try:
        value = fn(tx)
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return None, exc if not isinstance(exc, sqlite3.Error) else StoreError(str(exc))
    conn.execute("RELEASE op")
    return value, None


def _rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):  # nothing to roll back is fine
        conn.execute("ROLLBACK")


def _settle(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply the numbered migrations not yet recorded, each in its own transaction."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    for version, name, sql in migrations("sqlite"):
        if version in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, time.time())
            )
            conn.execute("COMMIT")
        except sqlite3.Error:
            _rollback(conn)
            raise
        log.info(
            "applied migration", extra={"event": "migration", "version": version, "migration": name}
        )


def _statements(sql: str) -> list[str]:
    """Split a migration file on ``;`` at line ends (our migrations hold no such literals)."""
    body = "\n".join(ln for ln in sql.splitlines() if not ln.strip().startswith("--"))
    return [s.strip() for s in body.split(";\n") if s.strip().rstrip(";")]

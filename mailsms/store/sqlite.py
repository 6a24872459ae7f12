"""The embedded store: SQLite in WAL mode, statements on the loop, fsyncs grouped in a child.

Why this shape. A durable commit costs an fsync (~175-280 µs here); the statements themselves
cost microseconds. Running them on a writer thread looked right but measured wrong: the
sqlite3 module drops the GIL around every statement, and each time the thread had to win it
back from a busy event loop (up to the 5 ms switch interval), so commits crawled under load.
So the statements run on the loop, in ``synchronous = NORMAL`` (no fsync in COMMIT; SQLite
still syncs around checkpoints, so the file stays consistent), and durability comes from an
explicit ``fdatasync`` of the WAL file, run for every commit waiting at that moment (group
commit) by a child process (:mod:`mailsms.store.syncer`): the loop writes a line and reads
one back, and no thread competes with it for the GIL. ``_run`` returns only after the fsync
that covers its commit, so an SMTP ``250`` still means "on disk".

Checkpoints are mostly the child's too: after an fsync round, at most every 200 ms, it runs a
PASSIVE checkpoint on a thread with its own connection, which never blocks the loop's writes.
Under a steady load those never reach the WAL's last frame, so SQLite's own autocheckpoint
(``_WAL_AUTOCHECKPOINT`` frames) finishes the job between two of our commits, and
``journal_size_limit`` caps the file the WAL is rewound into.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mailsms.errors import StoreError
from mailsms.store.base import Row, SqlStore, Tx
from mailsms.store.queries import migrations

T = TypeVar("T")
log = logging.getLogger("mailsms.store")

# WAL frames (4 KiB pages) past which our own commit is followed by a PASSIVE checkpoint.
# The fsync child's checkpoints run beside our commits and, with commits every millisecond,
# never catch up with the last frame; SQLite rewinds the WAL only once one has, so under a
# steady load the WAL grew without end (380 MB in six seconds of smtp-source), and every
# fsync round also had to journal the file's new size. A checkpoint between our own
# commits catches up (the child has copied most pages already), and the next commit
# starts the WAL again from its beginning.
_WAL_AUTOCHECKPOINT = 4096
_LAZY_FLUSH = 0.002  # seconds a lazy operation may wait for company in a commit
_SYNCER = str(Path(__file__).with_name("syncer.py"))


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection, sql: dict[str, str]) -> None:
        self.conn = conn
        self.sql = sql

    def execute(self, name: str, params: dict[str, Any]) -> int:
        return self.conn.execute(self.sql[name], params).rowcount

    def executemany(self, name: str, params: Sequence[dict[str, Any]]) -> None:
        if params:
            self.conn.executemany(self.sql[name], params)

    def fetchall(self, name: str, params: dict[str, Any]) -> list[Row]:
        cur = self.conn.execute(self.sql[name], params)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


class SqliteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._tx: _SqliteTx | None = None
        self._syncer: asyncio.subprocess.Process | None = None
        self._waiting: list[asyncio.Future[None]] = []
        self._syncing = False
        self._pending: list[tuple[Callable[[Tx], Any], asyncio.Future[Any]]] = []
        self._flush_at: asyncio.Handle | None = None  # the flush scheduled, if any
        self._flush_soon = False  # ... and whether it runs in the next loop iteration

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
        return cls(url.removeprefix("sqlite:///"))

    async def open(self) -> None:
        if self._conn is not None:
            return
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT}")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 5000")  # another process (the CLI) writing
            _migrate(conn)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from None
        self._conn = conn
        self._tx = _SqliteTx(conn, self.sql)
        await self._sync()  # migrations (and anything an earlier process left) on disk

    async def close(self) -> None:
        if self._pending and self._conn is not None:
            self._flush()  # bookkeeping still waiting for company is committed, not dropped
        conn, self._conn, self._tx = self._conn, None, None
        if conn is None:
            return
        await self._drain()
        conn.close()
        await self._stop_syncer()

    async def _drain(self) -> None:
        while self._syncing or self._waiting:
            with contextlib.suppress(StoreError):
                await self._sync()

    # --- running operations ------------------------------------------------------------

    async def _run(self, fn: Callable[[Tx], T], durable: bool = True, lazy: bool = False) -> T:
        if self._conn is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((fn, fut))
        if not lazy:
            if not self._flush_soon:
                if self._flush_at is not None:
                    self._flush_at.cancel()
                self._flush_at, self._flush_soon = loop.call_soon(self._flush), True
        elif self._flush_at is None:
            # Bookkeeping nobody is waiting on (a submit result): ride along with the next
            # intake commit, or commit on its own a moment later. In a commit of its own it
            # rewrote the same WAL pages again: up to half the commits per mail.
            self._flush_at = loop.call_later(_LAZY_FLUSH, self._flush)
        value: T = await fut
        if durable:
            await self._sync()
        return value

    def _flush(self) -> None:
        """Commit every operation queued since the last flush as one transaction.

        Operations from many SMTP sessions and the dispatcher share one BEGIN/COMMIT and
        write their rows into the same WAL pages: an operation is flushed in the next loop
        iteration, a lazy one (a submit result) waits up to ``_LAZY_FLUSH`` for company. If one
        fails, the batch is rolled back and each operation is replayed in its own
        transaction, so a failure (a duplicate id, say) only ever fails its own caller.
        """
        if self._flush_at is not None:
            self._flush_at.cancel()
        self._flush_at, self._flush_soon = None, False
        batch, self._pending = self._pending, []
        try:
            values = self._transaction(lambda tx: [fn(tx) for fn, _ in batch], "BEGIN IMMEDIATE")
        except BaseException:
            if len(batch) == 1:
                values = None
            else:
                for fn, fut in batch:
                    self._settle_one(fn, fut)
                return
        if values is None:
            self._settle_one(*batch[0])
            return
        for (_, fut), value in zip(batch, values, strict=True):
            if not fut.done():
                fut.set_result(value)

    def _settle_one(self, fn: Callable[[Tx], Any], fut: asyncio.Future[Any]) -> None:
        try:
            value = self._transaction(fn, "BEGIN IMMEDIATE")
        except BaseException as exc:  # handed to the one caller it belongs to
            if not fut.done():
                fut.set_exception(exc)
            return
        if not fut.done():
            fut.set_result(value)

    async def _read(self, fn: Callable[[Tx], T]) -> T:
        return self._transaction(fn, "BEGIN")

    async def _read_one(self, name: str, params: dict[str, Any]) -> list[Row]:
        """Autocommit: the statement is its own read transaction (the RCPT opt-out check
        runs for every recipient; BEGIN and COMMIT were two thirds of its statements)."""
        if self._tx is None:
            raise StoreError("store is not open")
        try:
            return self._tx.fetchall(name, params)
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from None

    def _transaction(self, fn: Callable[[Tx], T], begin: str) -> T:
        """Run ``fn`` between BEGIN and COMMIT on the loop (microseconds: no fsync here)."""
        conn, tx = self._conn, self._tx
        if conn is None or tx is None:
            raise StoreError("store is not open")
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot begin: {exc}") from None
        try:
            value = fn(tx)
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._forget_references()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(str(exc)) from None
            raise
        return value

    # --- group fsync -----------------------------------------------------------------------

    async def _sync(self) -> None:
        """Return once an fsync that started after this call has completed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        if not self._syncing:
            self._syncing = True
            asyncio.get_running_loop().create_task(self._sync_rounds())
        await fut

    async def _sync_rounds(self) -> None:
        try:
            while self._waiting:
                round_, self._waiting = self._waiting, []
                try:
                    await self._fsync()
                except StoreError as err:
                    for fut in round_:
                        if not fut.done():
                            fut.set_exception(err)
                    continue
                for fut in round_:
                    if not fut.done():
                        fut.set_result(None)
        finally:
            self._syncing = False

    async def _fsync(self) -> None:
        """One round in the syncer child: every WAL frame committed so far reaches the disk.
        A child that died is started again for the next round; this round fails (451)."""
        if self._conn is None and self._syncer is None:
            raise StoreError("store is closed")
        proc = self._syncer
        if proc is None or proc.returncode is not None:
            proc = self._syncer = await self._start_syncer()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(b"\n")
            answer = await proc.stdout.readline()
        except (OSError, ConnectionError) as exc:
            answer = f"error syncer: {exc}\n".encode()
        if answer == b"ok\n":
            return
        if not answer:  # EOF: the child is gone; reap it, start a fresh one next round
            self._syncer = None
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            answer = f"error fsync process exited ({proc.returncode})\n".encode()
        text = answer.decode(errors="replace").strip().removeprefix("error ")
        log.error("durable commit failed", extra={"event": "store_error", "error": text})
        raise StoreError(text)

    async def _start_syncer(self) -> asyncio.subprocess.Process:
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-S",
                _SYNCER,
                self.path,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise StoreError(f"cannot start the fsync process: {exc}") from None

    async def _stop_syncer(self) -> None:
        proc, self._syncer = self._syncer, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()  # EOF: the child finishes its round and exits
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if proc.returncode != 0:  # killed before the last commits could be fsynced by it
            log.warning(
                "fsync process ended abnormally",
                extra={"event": "syncer_exit", "returncode": proc.returncode},
            )

    async def queue_depth(self) -> dict[str, int]:
        """Counts every row: done on the fsync thread with a connection of its own, off the
        loop."""

        def count() -> dict[str, int]:
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                rows = conn.execute(self.sql["queue_depth"]).fetchall()
            finally:
                conn.close()
            return {str(state): int(n) for state, n in rows}

        if self._conn is None:
            raise StoreError("store is not open")
        try:
            return await asyncio.to_thread(count)
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from None


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
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        log.info(
            "applied migration", extra={"event": "migration", "version": version, "migration": name}
        )


def _statements(sql: str) -> list[str]:
    """Split a migration file on ``;`` at line ends (our migrations hold no such literals)."""
    body = "\n".join(ln for ln in sql.splitlines() if not ln.strip().startswith("--"))
    return [s.strip() for s in body.split(";\n") if s.strip().rstrip(";")]

"""The PostgreSQL store: several gateway processes may share one database.

Operations are the same functions as the SQLite store's (:mod:`mailsms.store.base`); here
each runs in its own transaction on a pooled psycopg 3 connection, on a small thread pool of
its own so the event loop never waits on the network. Claims use ``FOR UPDATE SKIP LOCKED``
(``sql/postgres.sql``) so concurrent workers take different rows without blocking.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from mailsms.errors import StoreError
from mailsms.store.base import Row, SqlStore, Tx
from mailsms.store.queries import migrations

T = TypeVar("T")
log = logging.getLogger("mailsms.store")

_POOL_SIZE = 8


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Row], sql: dict[str, str]) -> None:
        self.conn = conn
        self.sql = sql

    def execute(self, name: str, params: dict[str, Any]) -> int:
        return self.conn.execute(self.sql[name].encode(), params).rowcount

    def executemany(self, name: str, params: Sequence[dict[str, Any]]) -> None:
        if params:
            with self.conn.cursor() as cur:
                cur.executemany(self.sql[name].encode(), params)

    def fetchall(self, name: str, params: dict[str, Any]) -> list[Row]:
        return self.conn.execute(self.sql[name].encode(), params).fetchall()


class PostgresStore(SqlStore):
    dialect = "postgres"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._pool: ConnectionPool[psycopg.Connection[Row]] | None = None
        self._executor = ThreadPoolExecutor(_POOL_SIZE, thread_name_prefix="mailsms-pg")
        self._closed = False

    async def open(self) -> None:
        if self._closed:  # a closed store may be opened again: its threads are gone
            self._executor = ThreadPoolExecutor(_POOL_SIZE, thread_name_prefix="mailsms-pg")
            self._closed = False

        def connect() -> ConnectionPool[psycopg.Connection[Row]]:
            pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
                self.url,
                min_size=1,
                max_size=_POOL_SIZE,
                open=False,
                timeout=10,
                kwargs={"row_factory": dict_row},
            )
            pool.open(wait=True, timeout=10)
            with pool.connection() as conn:
                _migrate(conn)
            return pool

        try:
            self._pool = await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(f"cannot open PostgreSQL store: {exc}") from None

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(self._executor, pool.close)
        self._executor.shutdown(wait=True)
        self._closed = True

    async def _run(self, fn: Callable[[Tx], T], durable: bool = True, lazy: bool = False) -> T:
        pool = self._pool
        if pool is None:
            raise StoreError("store is not open")

        def work() -> T:
            try:
                with pool.connection() as conn, conn.transaction():
                    if not durable:
                        conn.execute("SET LOCAL synchronous_commit = off")
                    return fn(_PgTx(conn, self.sql))
            except (psycopg.Error, PoolTimeout) as exc:
                self._forget_references()  # rolled back: its reservations never happened
                raise StoreError(f"PostgreSQL: {exc}") from None
            except BaseException:
                self._forget_references()
                raise

        return await asyncio.get_running_loop().run_in_executor(self._executor, work)


def _migrate(conn: psycopg.Connection[Row]) -> None:
    """Apply pending migrations under an advisory lock, so concurrent starts take turns."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(727274)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
        )
        done = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations("postgres"):
            if version in done:
                continue
            conn.execute(sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations VALUES (%s, %s, %s)", (version, name, time.time())
            )
            log.info("applied migration", extra={"event": "migration", "version": version})

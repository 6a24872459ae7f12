"""The durable store: :class:`~mailsms.store.base.Store` and its SQLite and PostgreSQL engines."""

from __future__ import annotations

from mailsms.errors import ConfigError
from mailsms.store.base import SqlStore, Store

__all__ = ["SqlStore", "Store", "open_store"]


def open_store(url: str) -> SqlStore:
    """The store for ``store.url`` (not yet opened: call ``await store.open()``)."""
    if url.startswith("sqlite:///"):
        from mailsms.store.sqlite import SqliteStore

        return SqliteStore.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        from mailsms.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigError(f"store.url: unsupported scheme in {url!r}")

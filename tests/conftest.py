"""Shared fixtures: real servers on port 0, per-test databases, the peer requirement.

``MAILSMS_REQUIRE_PEERS=1`` (set by ``.ci/run``) turns every "peer missing" skip into a
failure, so CI cannot pass by skipping the tests that matter.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailsms.app import Gateway
from mailsms.config import Settings, from_dict
from tests.sink import Sink

REQUIRE_PEERS = os.environ.get("MAILSMS_REQUIRE_PEERS") == "1"
PG_ADMIN_URL = os.environ.get("MAILSMS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def need_peer(available: bool, reason: str) -> None:
    """Skip when a peer is missing, or fail when CI requires every peer."""
    if available:
        return
    if REQUIRE_PEERS:
        pytest.fail(f"required peer missing: {reason}")
    pytest.skip(reason)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        need_peer(False, f"PostgreSQL at {PG_ADMIN_URL}: {exc}")
        raise
    schema = "t_" + secrets.token_hex(6)
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/mailsms.db"
    url: str = request.getfixturevalue("pg_url")
    return url


def settings_for(tmp_path: Path, **sections: Any) -> Settings:
    """Test settings: everything on 127.0.0.1 port 0, SQLite in tmp_path, a fake carrier."""
    data: dict[str, Any] = {
        "gateway": {"domain": "sms.example.test"},
        "smtp": {"listen": "127.0.0.1:0"},
        "http": {"listen": "127.0.0.1:0", "api_token": "test-token"},
        "store": {"url": f"sqlite:///{tmp_path}/mailsms.db"},
        "dispatch": {"backoff_initial": "20ms", "backoff_max": "100ms", "poll_interval": "200ms"},
        "carrier": [{"name": "fake", "type": "fake"}],
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return from_dict(data, "<test>")


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def gateway_factory(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """Start in-process gateways; every one is stopped at teardown."""
    started: list[Gateway] = []

    async def make(**sections: Any) -> Gateway:
        gw = Gateway(settings_for(tmp_path, **sections))
        await gw.start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        await gw.stop()


@pytest.fixture
async def gateway(gateway_factory: GatewayFactory) -> Gateway:
    return await gateway_factory()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    """An SMTP smarthost on 127.0.0.1:0 that records what the gateway relays."""
    s = await Sink().start()
    yield s
    await s.stop()

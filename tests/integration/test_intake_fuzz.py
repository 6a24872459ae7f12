"""Hostile input through the real SMTP intake: any bytes in DATA get a 250 or a 5xx, the
server keeps serving, and the store never holds half a message.

Hypothesis drives the stdlib client (blocking) against a gateway running on its own event
loop in a background thread, so each example is a real SMTP transaction.
"""

from __future__ import annotations

import asyncio
import smtplib
import sqlite3
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsms.app import Gateway
from tests.conftest import settings_for

RCPT = "+447700900123@sms.example.test"


class ThreadedGateway:
    def __init__(self, tmp: Path) -> None:
        self.gw = Gateway(settings_for(tmp, carrier=[{"name": "fake", "type": "fake"}]))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.db = tmp / "mailsms.db"

    def __enter__(self) -> ThreadedGateway:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.gw.start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.gw.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def port(self) -> int:
        assert self.gw.listening.smtp is not None
        return self.gw.listening.smtp[1]


@pytest.fixture(scope="module")
def threaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedGateway]:
    with ThreadedGateway(tmp_path_factory.mktemp("fuzz")) as tg:
        yield tg


def transact(port: int, data: bytes) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        client.mail("ops@example.test")
        client.rcpt(RCPT)
        code, _ = client.data(data)
        return code


def mime_shapes() -> st.SearchStrategy[bytes]:
    header = st.sampled_from(
        [
            b"Content-Type: multipart/mixed; boundary=x",
            b"Content-Type: multipart/alternative",
            b"Content-Type: text/plain; charset=bogus-8",
            b"Content-Transfer-Encoding: base64",
            b"Content-Transfer-Encoding: quoted-printable",
            b"Subject: =?utf-8?B?////?=",
            b"Content-Type: text/html",
            b"MIME-Version: 1.0",
            b"Auto-Submitted: auto-replied",
        ]
    )
    body = st.lists(
        st.sampled_from(
            [
                b"--x",
                b"--x--",
                b"hello",
                b"=C3=A9=",
                b"////",
                b"<p>hi",
                b"Content-Type: text/plain",
                b"",
                b"\xff\xfe",
            ]
        ),
        max_size=12,
    )
    return st.builds(
        lambda hs, bs: b"\r\n".join(hs) + b"\r\n\r\n" + b"\r\n".join(bs) + b"\r\n",
        st.lists(header, max_size=6),
        body,
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.one_of(st.binary(max_size=3000), mime_shapes()))
def test_any_data_gets_250_or_5xx(threaded: ThreadedGateway, data: bytes) -> None:
    code = transact(threaded.port, data)
    assert code == 250 or 500 <= code < 600


def test_server_still_serves_and_nothing_is_half_stored(threaded: ThreadedGateway) -> None:
    msg = EmailMessage()
    msg["Subject"] = "still alive"
    msg.set_content("after the fuzzing, a normal mail")
    assert transact(threaded.port, msg.as_bytes()) == 250
    with sqlite3.connect(threaded.db) as conn:
        orphans = conn.execute(
            "SELECT COUNT(*) FROM messages m WHERE NOT EXISTS "
            "(SELECT 1 FROM parts p WHERE p.message_id = m.id)"
        ).fetchone()[0]
        unevented = conn.execute(
            "SELECT COUNT(*) FROM messages m WHERE NOT EXISTS "
            "(SELECT 1 FROM events e WHERE e.message_id = m.id)"
        ).fetchone()[0]
    assert orphans == 0 and unevented == 0

"""The whole gateway on the real PostgreSQL store: mail to SMS, a reply SMS to mail, a DSN."""

from __future__ import annotations

import aiohttp
import aiosmtplib
import pytest

from mailsms.model import State
from tests.conftest import GatewayFactory
from tests.helpers import settled
from tests.sink import Sink

pytestmark = pytest.mark.postgres

PHONE = "+447700900123"


async def test_round_trip_on_postgres(
    gateway_factory: GatewayFactory, sink: Sink, pg_url: str
) -> None:
    gw = await gateway_factory(
        store={"url": pg_url},
        relay=sink.relay_settings(),
        carrier=[
            {
                "name": "fake",
                "type": "fake",
                "from": "+447700900999",
                "webhook_token": "t",
                "permanent_failures": 1,
            }
        ],
    )
    assert gw.listening.smtp is not None and gw.listening.http is not None
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.listening.smtp[1]) as client:
        ids = []
        for _ in range(2):
            await client.mail("alice@example.test")
            await client.rcpt(f"{PHONE}@sms.example.test", options=["NOTIFY=FAILURE"])
            code, text = await client.data(
                b"From: alice@example.test\r\nSubject: pg\r\nMessage-ID: <pg1@example.test>\r\n"
                b"\r\nHello from PostgreSQL.\r\n"
            )
            assert code == 250
            ids.append(text.split()[-1])
    first, second = [await settled(gw, i) for i in ids]
    assert {first.state, second.state} == {State.FAILED, State.DELIVERED}
    [bounce] = await sink.wait_for(1)
    assert bounce.message.get_content_type() == "multipart/report"
    host, port = gw.listening.http
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://{host}:{port}/webhooks/fake/inbound",
            headers={"Authorization": "Bearer t"},
            json={"from": PHONE, "to": "+447700900999", "text": "Got it", "id": "pg-1"},
        ) as r,
    ):
        assert r.status == 200
    received = await sink.wait_for(2)
    reply = received[1].message
    assert reply["In-Reply-To"] == "<pg1@example.test>" and reply["To"] == "alice@example.test"

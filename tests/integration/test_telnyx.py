"""The telnyx carrier through the whole gateway: mail in over SMTP, submit to a local fake of
Telnyx's Messaging API (tests/telnyx_api.py), signed webhooks back, bounces to a real SMTP
sink. Webhooks are signed with a fresh Ed25519 key the way Telnyx signs them; the unit tests
hold that signing and our check against the telnyx SDK's own verification.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiosmtplib
import pytest

from mailsms.app import Gateway
from mailsms.model import State
from tests.conftest import GatewayFactory
from tests.helpers import in_state, settled
from tests.integration.test_dsn_flow import report_fields
from tests.sink import Sink
from tests.telnyx_api import FakeTelnyx, error, parts_of

DOMAIN = "sms.example.test"
PHONE = "+447700900123"
OURS = "+447700900999"
PUBLIC_URL = "https://gw.example.com"


@pytest.fixture
async def api() -> AsyncIterator[FakeTelnyx]:
    fake = await FakeTelnyx("KEY-test").start()
    yield fake
    await fake.stop()


async def make(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeTelnyx, **carrier: Any
) -> Gateway:
    settings = {
        "name": "tx",
        "type": "telnyx",
        "api_key": "KEY-test",
        "public_key": api.public_key,
        "api_url": api.url,
        "public_url": PUBLIC_URL,
        "from": OURS,
        **carrier,
    }
    return await gateway_factory(
        relay=sink.relay_settings(),
        carrier=[settings],
        inbound={"catch_all": "ops@example.test"},
    )


async def send(gw: Gateway, text: str) -> str:
    assert gw.listening.smtp is not None
    data = (
        "From: Alice <alice@example.test>\r\nSubject: Backups\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n"
    ).encode()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.listening.smtp[1]) as client:
        await client.mail("alice@example.test")
        await client.rcpt(f"{PHONE}@{DOMAIN}")
        code, reply = await client.data(data)
    assert code == 250, reply
    return reply.split()[-1]


async def hook(
    gw: Gateway, kind: str, body: bytes, headers: dict[str, str] | None
) -> tuple[int, Any]:
    assert gw.listening.http is not None
    host, port = gw.listening.http
    url = f"http://{host}:{port}/webhooks/tx/{kind}"
    headers = headers if headers is not None else {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        got = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, got


async def signed(gw: Gateway, api: FakeTelnyx, kind: str, body: bytes) -> tuple[int, Any]:
    return await hook(gw, kind, body, api.sign(body))


# --- submit ----------------------------------------------------------------------------------

TEXTS = {
    "gsm": "Nightly backup failed on db1.",
    "gsm long": "Disk /var is 95% full on db1 [alert]. " * 8,
    "unicode": "Привет, резервная копия не удалась ✓",
    "unicode long": "Сервер db1: резервное копирование не удалось, проверьте диск. " * 3,
}


@pytest.mark.parametrize("kind", list(TEXTS))
async def test_submit_then_finalized_delivered(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeTelnyx, kind: str
) -> None:
    gw = await make(gateway_factory, sink, api)
    id = await send(gw, TEXTS[kind])
    m = await in_state(gw, id, State.SUBMITTED)
    [request] = api.requests
    assert request == {
        "to": PHONE,
        "from": OURS,
        "text": m.text,
        "webhook_url": f"{PUBLIC_URL}/webhooks/tx/status",
    }
    assert api.keys == [id]  # our message id is the Idempotency-Key
    assert m.text.strip() == TEXTS[kind].strip()
    # One Telnyx id for the whole message, however many parts we counted; the fake's own
    # count of parts (independent of our encoder) agrees with ours.
    [telnyx_id] = api.sent
    assert [p.carrier_id for p in m.parts] == [telnyx_id] * len(m.parts)
    assert len(m.parts) == parts_of(m.text)[1]
    assert (len(m.parts) > 1) is kind.endswith("long")
    status, body = await signed(gw, api, "status", api.finalized(telnyx_id, "delivered"))
    assert (status, body) == (200, {"ok": True})
    assert (await settled(gw, id)).state is State.DELIVERED


async def test_a_messaging_profile_is_sent_with_the_sender(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeTelnyx
) -> None:
    gw = await make(gateway_factory, sink, api, messaging_profile_id="prof-1", public_url=None)
    await in_state(gw, await send(gw, "hello"), State.SUBMITTED)
    [request] = api.requests
    assert request == {"to": PHONE, "from": OURS, "text": "hello", "messaging_profile_id": "prof-1"}


async def test_temporary_errors_are_retried_with_the_same_idempotency_key(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeTelnyx
) -> None:
    api.script(429, error("10011", "Too many requests"))
    api.script(503, error("10007", "Unexpected error"))
    api.script(401, error("10009", "Authentication failed"))
    api.hang()  # no answer: the driver's timeout fires
    gw = await make(gateway_factory, sink, api, timeout="300ms")
    id = await send(gw, "retry me")
    m = await in_state(gw, id, State.SUBMITTED)
    assert m.attempts == 5 and len(api.requests) == 5
    assert api.keys == [id] * 5
    assert sink.received == []  # no bounce


@pytest.mark.parametrize(
    ("scripted", "code", "dsn_class"),
    [
        ([(422, error("40310", "Invalid 'to' address"))], "40310", "5.1.1"),
        ([(409, error("40300", "Blocked due to STOP message"))], "40300", "5.7.1"),
        (
            [(429, error("10011", "Too many requests")), (400, error("40305", "Invalid from"))],
            "40305",
            "5.",
        ),
    ],
)
async def test_permanent_errors_fail_with_a_bounce(
    gateway_factory: GatewayFactory,
    sink: Sink,
    api: FakeTelnyx,
    scripted: list[tuple[int, dict[str, Any]]],
    code: str,
    dsn_class: str,
) -> None:
    for status, body in scripted:
        api.script(status, body)
    gw = await make(gateway_factory, sink, api)
    id = await send(gw, "this will bounce")
    m = await settled(gw, id)
    assert m.state is State.FAILED and m.attempts == len(scripted)
    assert f"(code {code})" in (m.last_error or "")
    [dsn] = await sink.wait_for(1)
    assert dsn.mail_from == "<>" and dsn.rcpt_tos == ["alice@example.test"]
    _, fields = report_fields(dsn)
    assert fields["action"] == "failed" and fields["status"].startswith(dsn_class)
    assert code in fields["diagnostic-code"]
    # 40300 is the recipient's own STOP: the number goes on the opt-out list at once.
    assert await gw.store.opted_out(m.to) is (code == "40300")


# --- delivery reports --------------------------------------------------------------------------


async def submitted(gw: Gateway, api: FakeTelnyx) -> tuple[str, str]:
    id = await send(gw, "status please")
    await in_state(gw, id, State.SUBMITTED)
    [telnyx_id] = api.sent
    return id, telnyx_id


@pytest.mark.parametrize("state", ["delivery_failed", "sending_failed"])
async def test_finalized_failure_fails_the_message_with_a_bounce(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeTelnyx, state: str
) -> None:
    gw = await make(gateway_factory, sink, api)
    id, telnyx_id = await submitted(gw, api)
    status, _ = await signed(gw, api, "status", api.finalized(telnyx_id, state, "40008"))
    assert status == 200
    m = await settled(gw, id)
    assert m.state is State.FAILED and "40008" in (m.last_error or "")
    [dsn] = await sink.wait_for(1)
    _, fields = report_fields(dsn)
    assert fields["status"].startswith("5.") and "40008" in fields["diagnostic-code"]


async def test_sent_and_unconfirmed_change_nothing(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeTelnyx
) -> None:
    gw = await make(gateway_factory, sink, api)
    id, telnyx_id = await submitted(gw, api)
    sent = api.event("message.sent", {**api.sent[telnyx_id], "to": [{"status": "sent"}]})
    assert (await signed(gw, api, "status", sent))[0] == 200
    unconfirmed = api.finalized(telnyx_id, "delivery_unconfirmed")
    assert (await signed(gw, api, "status", unconfirmed))[0] == 200
    m = await gw.store.get(id)
    assert m is not None and m.state is State.SUBMITTED


# --- signatures ----------------------------------------------------------------------------------


async def test_forged_unsigned_stale_or_tampered_webhooks_are_403_and_store_nothing(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeTelnyx
) -> None:
    gw = await make(gateway_factory, sink, api)
    id, telnyx_id = await submitted(gw, api)
    inbound = api.received("in-1", PHONE, OURS, "forged?")
    delivered = api.finalized(telnyx_id, "delivered")
    other = FakeTelnyx("KEY-test")  # another account's key
    for kind, body in (("inbound", inbound), ("status", delivered)):
        stale = api.sign(body, int(time.time()) - 301)
        tampered = body.replace(b"forged?", b"FORGED!").replace(b"delivered", b"delivered ")
        assert tampered != body
        for headers, data in (
            (None, body),  # unsigned
            (other.sign(body), body),  # forged: signed with another key
            (stale, body),
            (api.sign(body), tampered),
        ):
            status, got = await hook(gw, kind, data, headers)
            assert status == 403, (kind, headers)
            assert got["error"]["code"] == "forbidden"
    assert await gw.store.list_inbound() == []
    m = await gw.store.get(id)
    assert m is not None and m.state is State.SUBMITTED


async def test_the_timestamp_window_follows_the_carrier_clock(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeTelnyx
) -> None:
    gw = await make(gateway_factory, sink, api, timestamp_tolerance="60s")
    then = 1_700_000_000
    body = api.received("in-clock", PHONE, OURS, "on time")
    gw.carriers["tx"].clock = lambda: then + 61  # type: ignore[attr-defined]
    assert (await hook(gw, "inbound", body, api.sign(body, then)))[0] == 403
    gw.carriers["tx"].clock = lambda: then + 59  # type: ignore[attr-defined]
    assert (await hook(gw, "inbound", body, api.sign(body, then)))[0] == 200


# --- inbound -----------------------------------------------------------------------------------


async def test_message_received_is_stored_once_and_relayed(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeTelnyx
) -> None:
    gw = await make(gateway_factory, sink, api)
    body = api.received("in-2", PHONE, OURS, "Fixed, thanks", 1, ("https://m.example/1.jpg",))
    assert await signed(gw, api, "inbound", body) == (200, {"ok": True})
    # Telnyx delivers the same event again (our 200 was lost): acknowledged, stored once.
    assert await signed(gw, api, "inbound", body) == (200, {"ok": True})
    [row] = await gw.store.list_inbound()
    assert (row["carrier"], row["carrier_id"], row["sender"], row["recipient"]) == (
        "tx",
        "in-2",
        PHONE,
        OURS,
    )
    assert row["received_at"] == 1714557598.0  # payload.received_at, not our clock
    assert row["text"] == "Fixed, thanks\n[media: https://m.example/1.jpg]"
    await sink.wait_for(1)
    later = api.received("in-3", PHONE, OURS, "one more")
    assert (await signed(gw, api, "inbound", later))[0] == 200
    received = await sink.wait_for(2)
    assert len(received) == 2 and b"Fixed, thanks" in received[0].data


async def test_store_down_is_503_then_telnyx_retry_is_stored(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeTelnyx
) -> None:
    gw = await make(gateway_factory, sink, api)
    body = api.received("in-4", PHONE, OURS, "are you there?")
    await gw.store.close()
    try:
        status, got = await signed(gw, api, "inbound", body)
        assert status == 503 and got["error"]["code"] == "store_unavailable"
    finally:
        await gw.store.open()
    assert await gw.store.list_inbound() == []
    assert (await signed(gw, api, "inbound", body))[0] == 200
    assert len(await gw.store.list_inbound()) == 1


async def test_events_the_gateway_does_not_use_are_acknowledged(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeTelnyx
) -> None:
    gw = await make(gateway_factory, sink, api)
    body = api.event("number_order.complete", {"id": "order-1"})
    assert await signed(gw, api, "inbound", body) == (200, {"ok": True})
    assert await signed(gw, api, "status", body) == (200, {"ok": True})
    assert await gw.store.list_inbound() == []


async def test_an_event_on_the_wrong_endpoint_is_refused(
    gateway_factory: GatewayFactory, sink: Sink, api: FakeTelnyx
) -> None:
    gw = await make(gateway_factory, sink, api)
    body = api.received("in-5", PHONE, OURS, "wrong door")
    status, got = await signed(gw, api, "status", body)
    assert status == 400 and "/webhooks/tx/inbound" in got["error"]["message"]
    assert await gw.store.list_inbound() == []

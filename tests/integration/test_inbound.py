"""SMS -> mail: webhooks (generic and Twilio), conversations, keywords, the relay queue.

The gateway runs in-process on 127.0.0.1:0; its smarthost is a real SMTP server (tests/sink.py)
that records what is relayed. Twilio signatures are computed with twilio's own
RequestValidator, so our check is held against the vendor's algorithm.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from twilio.request_validator import RequestValidator

from mailsms.app import Gateway
from mailsms.model import State
from tests.conftest import GatewayFactory
from tests.helpers import settled
from tests.sink import Sink

DOMAIN = "sms.example.test"
PHONE = "+447700900123"
OURS = "+447700900999"
TOKEN = "hook-secret"


def url(gw: Gateway, path: str) -> str:
    assert gw.listening.http is not None
    host, port = gw.listening.http
    return f"http://{host}:{port}{path}"


async def post(gw: Gateway, path: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(url(gw, path), **kw) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


async def make(gateway_factory: GatewayFactory, sink: Sink, **extra: Any) -> Gateway:
    sections: dict[str, Any] = {
        "relay": sink.relay_settings(),
        "carrier": [{"name": "fake", "type": "fake", "from": OURS, "webhook_token": TOKEN}],
    }
    sections.update(extra)
    return await gateway_factory(**sections)


async def text_in(gw: Gateway, text: str, id: str = "c1", frm: str = PHONE) -> tuple[int, Any]:
    return await post(
        gw,
        "/webhooks/fake/inbound",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"from": frm, "to": OURS, "text": text, "id": id},
    )


async def mail_to_phone(gw: Gateway, body: str, headers: str = "") -> str:
    assert gw.listening.smtp is not None
    data = (
        f"From: Alice <alice@example.test>\r\nSubject: Server room\r\n"
        f"Message-ID: <start-1@example.test>\r\n{headers}\r\n{body}\r\n"
    ).encode()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.listening.smtp[1]) as client:
        await client.mail("alice@example.test")
        await client.rcpt(f"{PHONE}@{DOMAIN}")
        code, text = await client.data(data)
    assert code == 250
    return text.split()[-1]


async def test_reply_sms_lands_threaded_with_the_sender_who_wrote(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    gw = await make(gateway_factory, sink)
    await settled(gw, await mail_to_phone(gw, "Is the AC fixed?"))
    status, body = await text_in(gw, "Yes, fixed at 10:40 <b>ok</b>")
    assert status == 200 and body["duplicate"] is False
    [got] = await sink.wait_for(1)
    msg = got.message
    assert got.rcpt_tos == ["alice@example.test"]
    assert got.mail_from == f"{PHONE}@{DOMAIN}"
    assert msg["From"].addresses[0].addr_spec == f"{PHONE}@{DOMAIN}"
    assert msg["Reply-To"].addresses[0].addr_spec == f"{PHONE}@{DOMAIN}"
    assert msg["In-Reply-To"] == "<start-1@example.test>"
    assert "<start-1@example.test>" in msg["References"]
    assert msg["Subject"] == "Re: Server room"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and "Yes, fixed at 10:40" in plain.get_content()
    assert html is not None and "&lt;b&gt;ok&lt;/b&gt;" in html.get_content()
    row = (await gw.store.list_inbound())[0]
    assert row["state"] in ("queued", "relayed") and row["routed_to"] == "alice@example.test"


async def test_a_repeated_webhook_is_acknowledged_but_relayed_once(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    gw = await make(gateway_factory, sink, inbound={"catch_all": "ops@example.test"})
    first = await text_in(gw, "hello", id="dup-1")
    second = await text_in(gw, "hello", id="dup-1")
    assert first[0] == second[0] == 200 and second[1]["duplicate"] is True
    assert first[1]["id"] == second[1]["id"]
    await sink.wait_for(1)
    await text_in(gw, "another", id="dup-2")
    received = await sink.wait_for(2)
    assert len(received) == 2


async def test_bad_or_missing_token_is_refused_and_nothing_stored(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    gw = await make(gateway_factory, sink)
    for headers in ({}, {"Authorization": "Bearer nope"}):
        status, body = await post(
            gw,
            "/webhooks/fake/inbound",
            headers=headers,
            json={"from": PHONE, "to": OURS, "text": "x", "id": "1"},
        )
        assert status == 401 and body["error"]["code"] == "unauthorized"
    assert await gw.store.list_inbound() == []


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"from": PHONE, "to": OURS, "text": "x"}, 400),
        ({"to": OURS, "text": "x", "id": "1"}, 400),
        ({"from": PHONE, "to": OURS, "text": "x", "id": "1", "received_at": "yesterday"}, 400),
    ],
)
async def test_generic_inbound_validates_fields(
    gateway_factory: GatewayFactory, sink: Sink, payload: dict[str, str], status: int
) -> None:
    gw = await make(gateway_factory, sink)
    got, body = await post(
        gw, "/webhooks/fake/inbound", json=payload, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert got == status and "error" in body
    assert await gw.store.list_inbound() == []


async def test_unknown_carrier_is_404(gateway_factory: GatewayFactory, sink: Sink) -> None:
    gw = await make(gateway_factory, sink)
    status, body = await post(gw, "/webhooks/nope/inbound", json={})
    assert status == 404 and "error" in body


async def test_static_route_then_catch_all_then_undeliverable(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    gw = await make(
        gateway_factory,
        sink,
        inbound={
            "route": [{"from": "+447700900555", "mailbox": "vip@example.test"}],
            "catch_all": "ops@example.test",
        },
    )
    await text_in(gw, "from the vip", id="r1", frm="+447700900555")
    await text_in(gw, "from someone", id="r2", frm="+447700900556")
    received = await sink.wait_for(2)
    assert sorted(r.rcpt_tos[0] for r in received) == ["ops@example.test", "vip@example.test"]

    nowhere = await make(gateway_factory, sink)
    _, body = await text_in(nowhere, "lost?", id="r3")
    await nowhere.inbound.process(body["id"])  # idempotent: runs now or finds it handled
    row = await nowhere.store.get_inbound(body["id"])
    assert row is not None and row["state"] == "undeliverable"
    assert await nowhere.store.mail_for(body["id"]) == []


async def test_stop_keyword_opts_the_number_out(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    gw = await make(gateway_factory, sink, inbound={"catch_all": "ops@example.test"})
    await text_in(gw, "STOP", id="k1")
    await sink.wait_for(1)  # the STOP itself still reaches a person
    assert await gw.store.opted_out(PHONE)
    assert gw.listening.smtp is not None
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.listening.smtp[1]) as client:
        await client.mail("alice@example.test")
        code, text = await client.execute_command(f"RCPT TO:<{PHONE}@{DOMAIN}>".encode())
    assert code == 550 and "opted out" in text
    await text_in(gw, "start", id="k2")
    await sink.wait_for(2)
    assert not await gw.store.opted_out(PHONE)


async def test_reply_from_the_mail_client_goes_back_as_sms_from_the_same_number(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    gw = await make(
        gateway_factory,
        sink,
        carrier=[
            {"name": "other", "type": "fake", "from": "+447700900111", "webhook_token": TOKEN},
            {"name": "fake", "type": "fake", "from": OURS, "webhook_token": TOKEN},
        ],
        inbound={"catch_all": "ops@example.test"},
    )
    await text_in(gw, "Can someone call me?", id="t1")
    [got] = await sink.wait_for(1)
    rendered_id = got.message["Message-ID"]
    id = await mail_to_phone(gw, "Calling you now.", headers=f"In-Reply-To: {rendered_id}\r\n")
    m = await settled(gw, id)
    assert m.state is State.DELIVERED and m.source_addr == OURS


async def test_relay_outage_is_retried_and_a_5xx_is_recorded(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    gw = await make(gateway_factory, sink, inbound={"catch_all": "ops@example.test"})
    sink.script("451 4.3.0 try later", "451 4.3.0 try later")
    await text_in(gw, "first", id="o1")
    [got] = await sink.wait_for(1)
    assert b"first" in got.data
    sink.script("550 5.1.1 no such mailbox")
    _, body = await text_in(gw, "second", id="o2")
    async with asyncio.timeout(10):
        while (row := await gw.store.get_inbound(body["id"])) and row["state"] != "relay_failed":
            with contextlib.suppress(TimeoutError):  # re-check even if an attempt was missed
                await asyncio.wait_for(gw.relay.progress(), 1.0)
    assert row is not None and "550" in row["last_error"]
    mails = await gw.store.mail_for(body["id"])
    assert [m["state"] for m in mails] == ["failed"]


async def test_generic_status_webhook_marks_delivered(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    gw = await make(
        gateway_factory,
        sink,
        carrier=[{"name": "fake", "type": "fake", "report": "none", "webhook_token": TOKEN}],
    )
    id = await mail_to_phone(gw, "hi")
    async with asyncio.timeout(10):
        while (m := await gw.store.get(id)) is None or m.state is not State.SUBMITTED:
            await gw.dispatcher.progress()
    carrier_id = m.parts[0].carrier_id
    status, _ = await post(
        gw,
        "/webhooks/fake/status",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"id": carrier_id, "status": "delivered"},
    )
    assert status == 200
    m2 = await gw.store.get(id)
    assert m2 is not None and m2.state is State.DELIVERED


# --- Twilio --------------------------------------------------------------------------------

TWILIO = {
    "name": "tw",
    "type": "twilio",
    "account_sid": "AC123",
    "auth_token": "tw-secret",
    "api_url": "http://127.0.0.1:9",
    "from": OURS,
}


async def twilio_post(
    gw: Gateway, path: str, form: dict[str, str], good: bool = True
) -> tuple[int, Any]:
    full = url(gw, path)
    sig = RequestValidator("tw-secret").compute_signature(full, form)
    headers = {"X-Twilio-Signature": sig if good else "forged" + sig}
    return await post(gw, path, data=form, headers=headers)


async def test_twilio_inbound_with_a_valid_signature(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    gw = await make(
        gateway_factory, sink, carrier=[TWILIO], inbound={"catch_all": "ops@example.test"}
    )
    form = {
        "From": PHONE,
        "To": OURS,
        "Body": "Hi from Twilio",
        "MessageSid": "SM1",
        "NumSegments": "1",
        "NumMedia": "1",
        "MediaUrl0": "https://media.example/1.jpg",
    }
    status, body = await twilio_post(gw, "/webhooks/tw/inbound", form)
    assert status == 200 and "<Response>" in body
    [got] = await sink.wait_for(1)
    assert b"Hi from Twilio" in got.data
    row = (await gw.store.list_inbound())[0]
    assert "[media: https://media.example/1.jpg]" in row["text"]


async def test_twilio_forged_or_missing_signature_is_403(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    gw = await make(gateway_factory, sink, carrier=[TWILIO])
    form = {"From": PHONE, "To": OURS, "Body": "x", "MessageSid": "SM2"}
    status, _ = await twilio_post(gw, "/webhooks/tw/inbound", form, good=False)
    assert status == 403
    status, _ = await post(gw, "/webhooks/tw/inbound", data=form)
    assert status == 403
    assert await gw.store.list_inbound() == []


async def test_twilio_signature_uses_the_public_url_behind_a_proxy(
    gateway_factory: GatewayFactory, sink: Sink
) -> None:
    gw = await make(
        gateway_factory, sink, carrier=[{**TWILIO, "public_url": "https://gw.example.com"}]
    )
    form = {"From": PHONE, "To": OURS, "Body": "x", "MessageSid": "SM3"}
    sig = RequestValidator("tw-secret").compute_signature(
        "https://gw.example.com/webhooks/tw/inbound", form
    )
    status, _ = await post(
        gw, "/webhooks/tw/inbound", data=form, headers={"X-Twilio-Signature": sig}
    )
    assert status == 200
